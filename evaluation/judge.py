"""VLM judge over any OpenAI-compatible chat-completions endpoint.

Temperature 0, versioned prompt files, a response cache keyed by model + prompt version + the
exact request text + image hashes (with a replay-only mode for reproducible reports), timeouts
and retries. Answers that are not the JSON the prompt asks for are recorded as malformed with
the raw text, never repaired or guessed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from evaluation.config import JudgeConfig
from pipeline.io.atomic import write_json

SCORES = ("alignment", "coherence", "usability")
FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class Verdict:
    """One judge answer: parsed value, or the error and whatever raw text came back."""

    ok: bool
    value: dict | None = None
    raw: str | None = None
    error: str | None = None
    cached: bool = False

    def describe(self) -> dict:
        return asdict(self)


class Prompts:
    """A versioned prompt file from evaluation/prompts/ (or a path)."""

    def __init__(self, name: str) -> None:
        path = (
            Path(name)
            if name.endswith(".yaml")
            else Path(str(files("evaluation") / "prompts" / f"{name}.yaml"))
        )
        if not path.is_file():
            raise FileNotFoundError(f"judge prompt file {path} does not exist")
        raw = yaml.safe_load(path.read_text())
        self.version: str = raw["version"]
        self.score: dict = raw["score"]
        self.compare: dict = raw["compare"]


class ResponseCache:
    """Raw answers on disk, one JSON file per request key (written atomically)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(model: str, version: str, kind: str, text: str, images: list[bytes]) -> str:
        record = {
            "model": model,
            "prompt_version": version,
            "kind": kind,
            "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "images_sha256": [hashlib.sha256(i).hexdigest() for i in images],
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        return json.loads(path.read_text())["content"] if path.is_file() else None

    def put(self, key: str, meta: dict, content: str) -> None:
        write_json(self._path(key), {**meta, "content": content})


class EndpointError(RuntimeError):
    """The endpoint gave no answer (after retries) or refused the request."""


def _strict_json(raw: str) -> dict:
    text = raw.strip()
    fenced = FENCE.match(text)
    obj = json.loads(fenced.group(1) if fenced else text)
    if not isinstance(obj, dict):
        raise ValueError("answer is JSON but not an object")
    return obj


def _is_int_in(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def parse_scores(raw: str) -> dict:
    obj = _strict_json(raw)
    bad = [k for k in SCORES if not _is_int_in(obj.get(k), 1, 5)]
    if bad:
        raise ValueError(f"{', '.join(bad)} missing or not an integer 1-5")
    return {k: obj[k] for k in SCORES} | ({"reason": str(obj["reason"])} if "reason" in obj else {})


def parse_choice(raw: str) -> dict:
    obj = _strict_json(raw)
    if not _is_int_in(obj.get("better"), 1, 2):
        raise ValueError("'better' missing or not 1 or 2")
    return {"better": obj["better"]} | ({"reason": str(obj["reason"])} if "reason" in obj else {})


class Judge:
    def __init__(
        self, cfg: JudgeConfig, cache_dir: Path, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.cfg, self.prompts, self.cache, self.sleep = (
            cfg,
            Prompts(cfg.prompts),
            ResponseCache(cache_dir),
            sleep,
        )
        self.requests = 0  # HTTP requests sent (attempts), for the run report

    def score(self, image: bytes, task: str, prompt: str, frames: int) -> Verdict:
        """The paper's three 1-5 scores for one sequence image."""
        user = self.prompts.score["user"].format(task=task, prompt=prompt, frames=frames)
        return self._ask("score", self.prompts.score["system"], user, [image], parse_scores)

    def compare(self, first: bytes, second: bytes, task: str, prompt: str) -> Verdict:
        """Which of two sequence images is better: {'better': 1 | 2}."""
        user = self.prompts.compare["user"].format(task=task, prompt=prompt)
        return self._ask("compare", self.prompts.compare["system"], user, [first, second], parse_choice)

    def _ask(
        self, kind: str, system: str, user: str, images: list[bytes], parse: Callable[[str], dict]
    ) -> Verdict:
        key = ResponseCache.key(self.cfg.model, self.prompts.version, kind, system + "\n" + user, images)
        raw, cached = self.cache.get(key), True
        if raw is None:
            if self.cfg.replay_only:
                return Verdict(False, error="not in the judge cache (replay-only mode)")
            cached = False
            try:
                raw = self._post(self._body(system, user, images))
            except EndpointError as exc:
                return Verdict(False, error=str(exc))
            self.cache.put(
                key, {"model": self.cfg.model, "prompt_version": self.prompts.version, "kind": kind}, raw
            )
        try:
            return Verdict(True, value=parse(raw), raw=raw, cached=cached)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return Verdict(False, raw=raw, error=f"malformed answer: {exc}", cached=cached)

    def _body(self, system: str, user: str, images: list[bytes]) -> dict:
        content = [{"type": "text", "text": user}] + [
            {
                "type": "image_url",
                "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(i).decode("ascii")},
            }
            for i in images
        ]
        return {
            "model": self.cfg.model,
            "temperature": 0,
            "max_tokens": self.cfg.max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
        }

    def _post(self, body: dict) -> str:
        """The answer text, retrying timeouts, connection errors, 429 and 5xx with exponential backoff."""
        url = self.cfg.url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                self.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            self.requests += 1
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    reply = json.loads(resp.read())
                return _content(reply)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
                if exc.code != 429 and exc.code < 500:
                    raise EndpointError(f"{url} refused the request ({last})") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except ValueError as exc:
                raise EndpointError(f"{url} answered with no chat-completion content ({exc})") from exc
        raise EndpointError(f"{url} failed after {self.cfg.retries + 1} attempts (last: {last})")


def _content(reply: dict) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"missing choices[0].message.content: {exc!r}") from exc
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    return content
