"""A thread-safe client for one OpenAI-compatible ``POST {base}/chat/completions`` endpoint with images.

Retries 429 (after the server's Retry-After), 5xx, timeouts and lost connections with exponential backoff;
other 4xx are refusals and not retried. Counts requests, retries and tokens for the run report, and stops
asking once a request budget is spent. The API key is read from the environment at each request and is
scrubbed from every message this module produces; credentials in the URL (``http://user:secret@host/v1``)
are sent as Basic auth (a bearer key wins) and shown redacted. The evaluation judge asks through it too.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from pipeline.io.http_auth import request
from pipeline.io.redact import redact_text, redact_url

MAX_WAIT_S = 120.0  # a Retry-After longer than this is capped


class ChatError(RuntimeError):
    """No usable reply: refused, or still failing after the retries."""


class BudgetSpent(ChatError):
    """The request budget is used up; nothing more is asked."""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def content_of(reply: object) -> str:
    """``choices[0].message.content`` of a chat-completions reply (ValueError when absent)."""
    try:
        content = reply["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f"reply has no choices[0].message.content ({e!r})") from e
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    return content


class Endpoint(Protocol):
    """The settings a client is made from: the build's ``caption:`` section or the evaluation's ``judge:``."""

    url: str | None
    model: str
    api_key_env: str
    timeout_s: float
    retries: int
    backoff_s: float
    max_tokens: int
    budget: int | None


class ChatClient:
    @classmethod
    def of(cls, cfg: Endpoint, max_in_flight: int, sleep: Callable[[float], None] = time.sleep) -> ChatClient:
        """A client for ``cfg.url`` (which must be set) with the section's model, key, retries and budget."""
        if not cfg.url:
            raise ValueError("no endpoint URL to ask")
        return cls(
            cfg.url,
            cfg.model,
            cfg.api_key_env,
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            backoff_s=cfg.backoff_s,
            max_tokens=cfg.max_tokens,
            max_in_flight=max_in_flight,
            budget=cfg.budget,
            sleep=sleep,
        )

    def __init__(
        self,
        url: str,
        model: str,
        api_key_env: str,
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        max_tokens: int,
        max_in_flight: int,
        budget: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url.rstrip("/") + "/chat/completions"  # credentials included: only ever sent
        self.endpoint = redact_url(self._url)  # what messages and reports show
        self.model, self.api_key_env, self.timeout_s = model, api_key_env, timeout_s
        self.retries, self.backoff_s, self.max_tokens, self.budget, self.sleep = (
            retries,
            backoff_s,
            max_tokens,
            budget,
            sleep,
        )
        self.counts: Counter = Counter()  # requests, retries by reason, prompt/completion tokens
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)  # requests in flight; backoff waits hold none

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return redact_text(text.replace(key, "[api key]") if key else text)

    def _count(self, **inc: int) -> None:
        with self._lock:
            self.counts.update(inc)

    def _take_request(self) -> None:
        with self._lock:
            if self.budget is not None and self.counts["requests"] >= self.budget:
                raise BudgetSpent(f"request budget of {self.budget} requests spent; not asked")
            self.counts["requests"] += 1

    def body(self, system: str, user: str, images: list[bytes], response_format: dict | None) -> dict:
        content = [{"type": "text", "text": user}] + [
            {
                "type": "image_url",
                "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(i).decode("ascii")},
            }
            for i in images
        ]
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
        }
        if response_format:
            body["response_format"] = response_format
        return body

    def complete(self, body: dict) -> str:
        """The answer text of one chat completion, after retries; ChatError (BudgetSpent) when there is none."""
        data = json.dumps(body).encode()
        last = ""
        for attempt in range(self.retries + 1):
            self._take_request()
            headers = {"Content-Type": "application/json"}
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            wait = self.backoff_s * 2**attempt
            try:
                req = request(self._url, data=data, headers=headers, method="POST")
                with self._slots, urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    reply = json.loads(resp.read())
                usage = (reply.get("usage") or {}) if isinstance(reply, dict) else {}
                self._count(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                )
                return content_of(reply)
            except urllib.error.HTTPError as e:
                detail = e.read()[:200].decode(errors="replace")
                last = f"HTTP {e.code}: {detail}"
                if e.code != 429 and e.code < 500:
                    raise ChatError(self._scrub(f"{self.endpoint} refused the request ({last})")) from None
                if e.code == 429:
                    wait = min(MAX_WAIT_S, _retry_after(e.headers.get("Retry-After")) or wait)
                reason = "429" if e.code == 429 else "5xx"
            except (TimeoutError, ConnectionError, urllib.error.URLError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                reason = (
                    "timeout" if "timed out" in str(last) or isinstance(e, TimeoutError) else "connection"
                )
            except ValueError as e:  # not JSON, or no content: the server is not speaking the protocol
                raise ChatError(
                    self._scrub(f"{self.endpoint} answered without a chat completion ({e})")
                ) from None
            if attempt < self.retries:
                self._count(**{f"retries_{reason}": 1})
                self.sleep(wait)
        raise ChatError(
            self._scrub(f"{self.endpoint} failed after {self.retries + 1} attempts (last: {last})")
        )
