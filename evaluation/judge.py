"""VLM judge over any OpenAI-compatible chat-completions endpoint.

Temperature 0, versioned prompt files, a response cache keyed by model + prompt version + the
exact request text + image hashes (with a replay-only mode for reproducible reports); timeouts,
retries, Retry-After and a request budget come from the one chat-completions client the caption
stage uses. Answers that are not the JSON the prompt asks for are recorded as malformed with
the raw text, never repaired or guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from evaluation.config import JudgeConfig
from pipeline.caption.cache import AnswerCache
from pipeline.caption.client import ChatClient, ChatError

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


def answer_key(model: str, version: str, kind: str, text: str, images: list[bytes]) -> str:
    """Names one judge answer: model, prompt version, kind, the exact request text and the images."""
    record = {
        "model": model,
        "prompt_version": version,
        "kind": kind,
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "images_sha256": [hashlib.sha256(i).hexdigest() for i in images],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


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
    """Asks through the caption client (pipeline.caption.client: retries with Retry-After, the request
    budget, key scrubbing, credentials in the URL) and keeps answers in the caption answer cache's files,
    keyed by ``answer_key``. Unlike captions, every answer is cached, malformed ones too: a replayed report
    shows what the judge said."""

    def __init__(
        self, cfg: JudgeConfig, cache_dir: Path, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.cfg, self.prompts, self.cache = cfg, Prompts(cfg.prompts), AnswerCache(cache_dir)
        # one question at a time; no URL (replay-only): nothing is asked
        self.client = ChatClient.of(cfg, 1, sleep) if cfg.url else None

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
        key = answer_key(self.cfg.model, self.prompts.version, kind, system + "\n" + user, images)
        raw, cached = self.cache.get(key), True
        if raw is None:
            if self.cfg.replay_only or self.client is None:
                return Verdict(False, error="not in the judge cache (replay-only mode)")
            cached = False
            try:
                raw = self.client.complete(self.client.body(system, user, images, response_format=None))
            except ChatError as exc:  # refused, failing after the retries, or the budget is spent
                return Verdict(False, error=str(exc))
            self.cache.put(key, self.cfg.model, raw)
        try:
            return Verdict(True, value=parse(raw), raw=raw, cached=cached)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return Verdict(False, raw=raw, error=f"malformed answer: {exc}", cached=cached)
