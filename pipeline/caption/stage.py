"""The caption stage: give samples the VLM's hierarchical caption, many requests in flight at once.

It runs in the driver (the build's, or `makeanything caption`'s), between the samples and the shard
committer: one client bounds the requests in flight to ``max_concurrency`` across the whole run, whatever
the number of Dask workers. A sample the VLM could not caption keeps its template caption; the reason
goes to the report. Nothing here writes shards.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from pipeline.caption.cache import AnswerCache, answer_key
from pipeline.caption.client import BudgetSpent, ChatClient, ChatError
from pipeline.caption.prompt import (
    MalformedAnswer,
    parse_answer,
    pictures,
    prompt_sha,
    question,
    response_format,
)
from pipeline.caption.record import template_of, vlm_record
from pipeline.config import CaptionConfig
from pipeline.corpus.shards import Sample
from pipeline.layout import Layout
from pipeline.taxonomy import Taxonomy

T = TypeVar("T")
MALFORMED_TRIES = 2  # a malformed or wrong-length answer is asked once more, then the sample falls back


def sample_layout(meta: dict) -> Layout:
    return Layout(**{k: meta["layout"][k] for k in ("rows", "cols", "cell", "order", "separator")})


class Captioner:
    def __init__(
        self,
        cfg: CaptionConfig,
        taxonomy: Taxonomy,
        cache_dir: str | Path,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not cfg.url:
            raise ValueError("caption.url is not set: no endpoint to ask")
        self.cfg, self.taxonomy, self.cache = cfg, taxonomy, AnswerCache(cache_dir)
        self.client = ChatClient.of(cfg, cfg.max_concurrency, sleep)
        self.counts: Counter = (
            Counter()
        )  # captioned, from_cache, fallback, malformed_answers, already_captioned
        self.fallbacks: dict[str, str] = {}
        self._lock = threading.Lock()

    def _note(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def expected_sha(self, task_id: str) -> str | None:
        """The prompt hash a caption of this task would have now (None: the task is not in the taxonomy)."""
        if task_id not in self.taxonomy:
            return None
        return prompt_sha(
            self.cfg.prompt or self.taxonomy[task_id].caption_prompt, self.cfg.images, self.cfg.image_side
        )

    def wanted(self, meta: dict) -> bool:
        """Whether the sample lacks a caption by this model and prompt (else it is left as it is)."""
        cap = meta.get("caption") or {}
        done = cap.get("model") == self.cfg.model and cap.get("prompt_sha") == self.expected_sha(
            meta["task"]["id"]
        )
        if done:
            self._note("already_captioned")
        return not done

    def _fall_back(self, sample: Sample, reason: str) -> Sample:
        self._note("fallback")
        self.fallbacks[sample.key] = reason
        return sample

    def _ask(self, body: dict, steps: int) -> tuple[str, tuple[str, list[str]]]:
        """The raw answer and its parse; MalformedAnswer after MALFORMED_TRIES bad answers."""
        for attempt in range(MALFORMED_TRIES):
            raw = self.client.complete(body)
            try:
                return raw, parse_answer(raw, steps)
            except MalformedAnswer as e:
                self._note("malformed_answers")
                if attempt == MALFORMED_TRIES - 1:
                    raise MalformedAnswer(f"malformed answer {MALFORMED_TRIES} times, last: {e}") from None
        raise AssertionError("unreachable")

    def caption(self, sample: Sample) -> Sample:
        """The sample with its VLM caption (``.txt`` and ``caption`` record), or unchanged with the reason noted."""
        meta, cfg = sample.meta, self.cfg
        try:
            layout = sample_layout(meta)
            q = question(
                self.taxonomy[meta["task"]["id"]],
                layout,
                meta["source"].get("subject") or None,
                cfg.prompt,
                cfg.images,
                cfg.image_side,
            )
        except KeyError as e:
            return self._fall_back(sample, f"sample json lacks {e} or names a task not in the taxonomy")
        except ValueError as e:
            return self._fall_back(sample, f"sample json has an invalid layout: {e}")
        fmt = response_format(cfg.response_format, q.steps)
        key = answer_key(cfg.model, q.system + "\n" + q.user, sample.jpg, cfg.images, cfg.image_side, fmt)
        raw = self.cache.get(key)
        try:
            if raw is not None:
                process, steps = parse_answer(raw, q.steps)
                self._note("from_cache")
            else:
                try:
                    images = pictures(sample.jpg, layout, cfg.images, cfg.image_side)
                except (OSError, ValueError) as e:  # an unreadable grid image, a layout that does not fit it
                    return self._fall_back(
                        sample, f"cannot cut the frames from the grid: {type(e).__name__}: {e}"
                    )
                raw, (process, steps) = self._ask(self.client.body(q.system, q.user, images, fmt), q.steps)
                self.cache.put(key, cfg.model, raw)
        except BudgetSpent as e:
            self._note("not_asked_budget")
            return self._fall_back(sample, str(e))
        except (ChatError, MalformedAnswer) as e:
            return self._fall_back(sample, str(e))
        self._note("captioned")
        record = vlm_record(template_of(meta["caption"]), layout, process, steps, cfg.model, q.prompt_sha)
        return Sample(sample.key, sample.jpg, record["text"], {**meta, "caption": record})

    def stream(
        self,
        items: Iterable[T],
        samples_of: Callable[[T], list[Sample]],
        with_samples: Callable[[T, list[Sample]], T],
    ) -> Iterator[T]:
        """Items (sources, shards) back with their samples captioned, as they finish; at most 4 x
        max_concurrency samples wait at once, so memory stays bounded however fast items arrive."""
        limit = 4 * self.cfg.max_concurrency
        pending: list[tuple[T, list[Future]]] = []

        def finished() -> Iterator[T]:
            for entry in [p for p in pending if all(f.done() for f in p[1])]:
                pending.remove(entry)
                yield with_samples(entry[0], [f.result() for f in entry[1]])

        def waiting() -> list[Future]:
            return [f for _, fs in pending for f in fs if not f.done()]

        # twice the request slots: while some threads wait on the server, others cut and encode the next frames
        with ThreadPoolExecutor(2 * self.cfg.max_concurrency, thread_name_prefix="caption") as pool:
            for item in items:
                pending.append((item, [pool.submit(self.caption, s) for s in samples_of(item)]))
                yield from finished()
                while len(waiting()) > limit:
                    wait(waiting(), return_when=FIRST_COMPLETED)
                    yield from finished()
            while pending:
                wait(waiting(), return_when=FIRST_COMPLETED)
                yield from finished()
        if self.counts["not_asked_budget"]:
            print(
                f"caption budget of {self.cfg.budget} requests reached: {self.counts['not_asked_budget']} "
                f"samples were not asked and keep their template caption",
                file=sys.stderr,
            )

    def summary(self) -> dict:
        """The report's caption section: what was asked, what it cost, and every fallback with its reason."""
        c = self.client.counts
        return {
            "model": self.cfg.model,
            "endpoint": self.client.endpoint,
            "requests": c["requests"],
            "retries": {k[8:]: v for k, v in sorted(c.items()) if k.startswith("retries_")},
            "prompt_tokens": c["prompt_tokens"],
            "completion_tokens": c["completion_tokens"],
            "budget": self.cfg.budget,
            **{
                k: self.counts[k]
                for k in (
                    "captioned",
                    "from_cache",
                    "fallback",
                    "malformed_answers",
                    "not_asked_budget",
                    "already_captioned",
                )
            },
            "fallbacks": dict(sorted(self.fallbacks.items())),
        }
