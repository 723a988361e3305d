"""The caption stage against a real chat-completions server on loopback (pipeline/caption/echo_server.py): the exact
request and `.txt`, the answer cache, retries on 429/5xx/timeouts, malformed and wrong-length answers,
the concurrency bound and the request budget."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.caption.echo_server import image_tag
from pipeline.caption.record import template_record
from pipeline.caption.stage import Captioner
from pipeline.config import CaptionConfig
from pipeline.corpus.shards import Sample, encode_jpeg
from pipeline.layout import Layout, tile
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta

TAXONOMY = Taxonomy.load()
LAYOUT = Layout(rows=3, cols=3, cell=48, separator=2)
COLOURS = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (128, 128, 0),
]


def sample(n: int = 0, subject: str | None = "a cat") -> Sample:
    """A painting sample whose step k is a solid colour COLOURS[k-1] (so the sent frames can be checked)."""
    frames = [np.full((40, 60, 3), c, np.uint8) for c in np.roll(np.array(COLOURS), n, axis=0)]
    template = TAXONOMY["painting"].caption(subject)
    key = f"painting_src{n}_s0"
    meta = made_meta(
        key,
        TAXONOMY["painting"].describe(),
        LAYOUT.describe(),
        template,
        uri=f"src{n}",
        sha256=f"{n:064d}",
        kind="images",
    )
    meta["caption"], meta["source"]["subject"] = template_record(template), subject
    return Sample(key, encode_jpeg(tile(frames, LAYOUT)), template, meta)


def captioner(vlm, tmp_path, sleeps: list | None = None, **cfg) -> Captioner:
    config = CaptionConfig(
        **{
            "url": vlm.url,
            "model": "test-vlm",
            "api_key_env": "TEST_VLM_KEY",
            "timeout_s": 5,
            "backoff_s": 0.5,
            **cfg,
        }
    )
    return Captioner(
        config, TAXONOMY, tmp_path / "cache", sleep=(sleeps.append if sleeps is not None else lambda s: None)
    )


def sent_images(request: dict) -> list[bytes]:
    parts = request["body"]["messages"][1]["content"][1:]
    return [base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in parts]


def test_request_and_txt_are_the_protocol_and_the_papers_form(vlm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_VLM_KEY", "sk-test-123")
    vlm.expect_key = "sk-test-123"
    out = captioner(vlm, tmp_path).caption(sample())
    assert len(vlm.requests) == 1
    req = vlm.requests[0]
    body = req["body"]
    assert body["model"] == "test-vlm" and body["response_format"] == {"type": "json_object"}
    user = body["messages"][1]["content"][0]["text"]
    assert "one painting process" in user and "The subject is a cat." in user and "exactly 9 strings" in user
    images = sent_images(req)
    assert len(images) == 9  # the step frames, in step order: each is its step's colour
    for img, colour in zip(images, COLOURS):
        px = np.asarray(Image.open(io.BytesIO(img)).convert("RGB"))
        centre = px[px.shape[0] // 2 - 4 : px.shape[0] // 2 + 4, px.shape[1] // 2 - 4 : px.shape[1] // 2 + 4]
        assert np.abs(centre.reshape(-1, 3).mean(0) - colour).max() < 12
    steps = " ".join(f"<image-{k}> Work on part {image_tag(i)}." for k, i in enumerate(images, 1))
    assert out.caption == f"3*3 of 9 sub-images, Step-by-step painting process, {steps}"
    rec = out.meta["caption"]
    assert (
        rec["text"] == out.caption
        and rec["template"] == "3*3 of 9 sub-images, step-by-step painting process, a cat"
    )
    assert rec["process"] == "Step-by-step painting process" and len(rec["steps"]) == 9
    assert rec["model"] == "test-vlm" and len(rec["prompt_sha"]) == 64
    assert out.jpg == sample().jpg and out.key == sample().key


def test_grid_mode_sends_one_image_and_states_the_reading_order(vlm, tmp_path):
    out = captioner(vlm, tmp_path, images="grid", response_format="json_schema").caption(sample())
    body = vlm.requests[0]["body"]
    assert len(sent_images(vlm.requests[0])) == 1
    assert "step 4 at row 2 column 3" in body["messages"][1]["content"][0]["text"]  # serpentine
    schema = body["response_format"]["json_schema"]["schema"]["properties"]["steps"]
    assert schema["minItems"] == schema["maxItems"] == 9
    assert out.meta["caption"]["steps"] == [f"Work on part cell{k}." for k in range(1, 10)]


def test_cached_answers_make_a_second_run_ask_nothing(vlm, tmp_path):
    first = [captioner(vlm, tmp_path).caption(sample(n)) for n in range(3)]
    assert len(vlm.requests) == 3
    again = captioner(vlm, tmp_path)
    second = [again.caption(sample(n)) for n in range(3)]
    assert len(vlm.requests) == 3 and again.summary()["requests"] == 0
    assert again.summary()["from_cache"] == 3
    assert [s.meta for s in second] == [s.meta for s in first]
    other_model = captioner(vlm, tmp_path, model="another-vlm")
    other_model.caption(sample(0))
    assert len(vlm.requests) == 4  # the cache is per model


@pytest.mark.parametrize("mode,retry", [("429", "429"), ("500", "5xx"), ("hang", "timeout")])
def test_429_5xx_and_timeouts_are_retried_with_backoff(vlm, tmp_path, mode, retry):
    vlm.mode, vlm.times, vlm.retry_after = mode, 2, "7"
    sleeps: list[float] = []
    cap = captioner(vlm, tmp_path, sleeps, timeout_s=0.4)
    out = cap.caption(sample())
    assert out.meta["caption"]["model"] == "test-vlm"
    s = cap.summary()
    assert s["requests"] == 3 and s["retries"] == {retry: 2} and s["fallback"] == 0
    assert sleeps == ([7.0, 7.0] if mode == "429" else [0.5, 1.0])  # Retry-After, else exponential backoff


def test_a_server_that_keeps_failing_leaves_the_template_with_the_reason(vlm, tmp_path):
    vlm.mode = "500"
    cap = captioner(vlm, tmp_path, retries=2)
    s0 = sample()
    out = cap.caption(s0)
    assert out == s0
    assert len(vlm.requests) == 3
    assert "failed after 3 attempts (last: HTTP 500" in cap.summary()["fallbacks"][s0.key]


def test_a_malformed_answer_is_asked_once_more(vlm, tmp_path):
    vlm.mode, vlm.times = "malformed", 1
    cap = captioner(vlm, tmp_path)
    assert cap.caption(sample()).meta["caption"]["model"] == "test-vlm"
    assert len(vlm.requests) == 2 and cap.summary()["malformed_answers"] == 1


@pytest.mark.parametrize("mode,reason", [("malformed", "not JSON"), ("wrong_length", "8 steps for 9 images")])
def test_two_bad_answers_keep_the_template_caption_and_are_not_cached(vlm, tmp_path, mode, reason):
    vlm.mode = mode
    cap = captioner(vlm, tmp_path)
    s0 = sample()
    assert cap.caption(s0) == s0
    s = cap.summary()
    assert len(vlm.requests) == 2 and s["fallback"] == 1 and s["malformed_answers"] == 2
    assert s["fallbacks"][s0.key].startswith("malformed answer 2 times") and reason in s["fallbacks"][s0.key]
    vlm.mode = "ok"  # the next run asks again (nothing bad was cached) and gets a caption
    assert captioner(vlm, tmp_path).caption(s0).meta["caption"]["model"] == "test-vlm"
    assert len(vlm.requests) == 3


def test_a_refused_request_is_not_retried_and_the_key_is_never_written(vlm, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_VLM_KEY", "sk-wrong-key-456")
    vlm.expect_key = "sk-right-key"
    cap = captioner(vlm, tmp_path)
    s0 = sample()
    assert cap.caption(s0) == s0
    assert vlm.statuses == [400]
    reason = cap.summary()["fallbacks"][s0.key]
    assert "refused the request (HTTP 400" in reason and "sk-wrong-key-456" not in json.dumps(cap.summary())


def test_concurrency_reaches_and_never_exceeds_the_limit(vlm, tmp_path):
    vlm.latency = 0.15
    cap = captioner(vlm, tmp_path, max_concurrency=3)
    items = [[sample(n)] for n in range(12)]  # e.g. one source each
    out = list(cap.stream(items, lambda item: item, lambda item, samples: samples))
    assert len(out) == 12 and vlm.max_in_flight == 3
    assert sorted(s[0].key for s in out) == sorted(s[0].key for s in items)
    assert all(s[0].meta["caption"]["model"] == "test-vlm" for s in out)


def test_budget_stops_asking_and_says_so(vlm, tmp_path, capsys):
    cap = captioner(vlm, tmp_path, budget=3, max_concurrency=1)
    out = list(cap.stream([[sample(n)] for n in range(5)], lambda item: item, lambda item, samples: samples))
    s = cap.summary()
    assert len(vlm.requests) == 3 and s["requests"] == 3 and s["captioned"] == 3
    assert s["not_asked_budget"] == 2 and sum(x[0].meta["caption"]["model"] is None for x in out) == 2
    assert "caption budget of 3 requests reached: 2 samples were not asked" in capsys.readouterr().err


def test_token_counts_are_the_servers(vlm, tmp_path):
    cap = captioner(vlm, tmp_path)
    for n in range(2):
        cap.caption(sample(n))
    s = cap.summary()
    assert (s["prompt_tokens"], s["completion_tokens"]) == (
        vlm.usage["prompt_tokens"],
        vlm.usage["completion_tokens"],
    )
    assert s["prompt_tokens"] > 0
