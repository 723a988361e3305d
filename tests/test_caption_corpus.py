"""VLM captions in the build (`--caption-url`) and for an existing corpus (`makeanything caption`), against
the loopback chat-completions server: exact captions, skip-what-is-done, the loader's view, and kill -9
at each commit point of a real `makeanything caption` process, then rerun: every sample once, captioned once."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from evaluation.adapters import read_shard
from makeanything.cli import main
from pipeline.corpus.card import render
from pipeline.corpus.index import read_index
from pipeline.corpus.inspection import verify
from pipeline.io.storage import Storage
from pipeline.taxonomy import Taxonomy
from tests.refresh_support import inspect_verify, no_temp_files, run_cli, shard_keys, write_config
from training.data import HeadResolver, decoded

KEY_ENV = "MAKEANYTHING_TEST_VLM_KEY"
SECRET = "sk-test-secret-7f3a9c"
# Where each run dies, in order; the later ones find the debris of the earlier ones.
FAILPOINTS = ["shard-staged", "shard-published", "committed:2", "before-index"]


def listed_samples(out: Path) -> dict[str, dict]:
    """{key: {"txt", "json"}} of every sample in the shards dataset.json lists (each key at most once)."""
    samples: dict[str, dict] = {}
    for shard in json.loads((out / "dataset.json").read_text())["shards"]:
        with tarfile.open(out / "shards" / shard["name"]) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                if ext in ("txt", "json"):
                    assert ext not in samples.get(key, {}), f"{key} twice"
                    samples.setdefault(key, {})[ext] = tar.extractfile(m).read().decode()
    return {k: {"txt": v["txt"], "json": json.loads(v["json"])} for k, v in samples.items()}


def assert_captioned(samples: dict[str, dict], model: str = "test-vlm") -> None:
    """Every sample holds one VLM caption in the paper's form, and its template line is untouched."""
    for key, s in samples.items():
        cap, layout = s["json"]["caption"], s["json"]["layout"]
        n = layout["rows"] * layout["cols"]
        assert cap["model"] == model and s["txt"] == cap["text"], key
        assert len(cap["steps"]) == n and s["txt"].count("<image-") == n, key
        assert s["txt"].startswith(f"{layout['rows']}*{layout['cols']} of {n} sub-images, Step-by-step "), key
        assert cap["template"].startswith(
            f"{layout['rows']}*{layout['cols']} of {n} sub-images, step-by-step "
        ), key
        assert "<image-" not in cap["template"], key


@pytest.fixture
def corpus_copy(reference, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(reference["out"], out)
    return out


def test_caption_command_captions_each_sample_once_and_the_loader_reads_them(
    corpus_copy, reference, vlm, monkeypatch
):
    out = corpus_copy
    before = listed_samples(out)
    monkeypatch.setenv(KEY_ENV, SECRET)
    vlm.expect_key = SECRET
    args = ["caption", str(out), "--url", vlm.url, "--model", "test-vlm", "--quiet", "--json"]
    cfg = out.parent / "caption.yaml"
    cfg.write_text(f"caption: {{api_key_env: {KEY_ENV}, max_concurrency: 3}}\n")
    assert main(args + ["--config", str(cfg)]) == 0
    after = listed_samples(out)
    assert sorted(after) == sorted(before) == reference["keys"]
    assert_captioned(after)
    assert len(vlm.requests) == len(after)  # one request per sample
    for key, s in after.items():
        assert s["json"]["caption"]["template"] == before[key]["txt"]
        assert {k: v for k, v in s["json"].items() if k != "caption"} == {
            k: v for k, v in before[key]["json"].items() if k != "caption"
        }
    assert verify(Storage(out), read_index(Storage(out))) == []
    index = read_index(Storage(out))
    assert index["samples"] == reference["index"]["samples"] and index["history"][-1]["command"] == "caption"
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(s["name"] for s in index["shards"])
    assert (out / "README.md").read_text() == render(index, Taxonomy.load())  # the card follows dataset.json
    report = json.loads((out / "caption-report.json").read_text())
    assert report["caption"]["captioned"] == len(after) and report["caption"]["fallbacks"] == {}
    assert "## VLM captions" in (out / "caption-report.md").read_text()
    # the key never reaches disk
    assert not [p for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]

    # a rerun finds everything captioned by this model and prompt: no request, no shard rewritten
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert main(args + ["--config", str(cfg)]) == 0
    assert len(vlm.requests) == len(after) and sorted(p.name for p in (out / "shards").iterdir()) == shards

    # the trainer reads the rich captions, or the template lines with data.caption: template
    taxonomy = Taxonomy.load()
    urls = [str(out / "shards" / s["name"]) for s in index["shards"]]
    rich = {s["key"]: s["caption"] for s in decoded(urls, HeadResolver(taxonomy, {}, "rich"), 32, 16)}
    template = {s["key"]: s["caption"] for s in decoded(urls, HeadResolver(taxonomy, {}, "template"), 32, 16)}
    assert rich == {k: s["txt"] for k, s in after.items()}
    assert template == {k: s["txt"] for k, s in before.items()}
    # evaluation reads the prompt and the step texts from the <image-k> parts
    seqs = [q for u in urls for q in read_shard(Path(u), "ours", taxonomy)]
    assert {q.key: q.steps for q in seqs} == {k: s["json"]["caption"]["steps"] for k, s in after.items()}
    for q in seqs:
        cap, lay = after[q.key]["json"]["caption"], after[q.key]["json"]["layout"]
        assert (
            q.prompt
            == f"{lay['rows']}*{lay['cols']} of {lay['rows'] * lay['cols']} sub-images, {cap['process']}"
        )


def test_another_model_recaptions_and_a_server_down_keeps_the_template(corpus_copy, vlm, capsys):
    out = corpus_copy
    before = listed_samples(out)
    vlm.mode = "500"
    assert (
        main(
            [
                "caption",
                str(out),
                "--url",
                vlm.url,
                "--model",
                "test-vlm",
                "--quiet",
                "--config",
                str(write_config(out.parent, caption={"retries": 1, "backoff_s": 0})),
            ]
        )
        == 1  # no request succeeded: said on the terminal, not only in the report
    )
    assert listed_samples(out) == before  # nothing captioned, nothing rewritten
    report = json.loads((out / "caption-report.json").read_text())["caption"]
    assert report["fallback"] == len(before) and all("HTTP 500" in r for r in report["fallbacks"].values())
    err = capsys.readouterr().err
    assert (
        f"no caption request succeeded ({len(before)} samples kept the template)" in err and "HTTP 500" in err
    )


def test_the_echo_server_module_lets_a_user_try_captioning_without_a_model(corpus_copy):
    """The documented way (docs/CAPTION.md): `python -m pipeline.caption.echo_server`, then caption against it."""
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.caption.echo_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        res = run_cli(["caption", str(corpus_copy), "--url", url, "--model", "echo", "--quiet", "--json"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["captioned"] == len(listed_samples(corpus_copy)) > 0 and summary["fallback"] == 0
    assert_captioned(listed_samples(corpus_copy), model="echo")


def test_kill_9_at_each_point_then_rerun_captions_every_sample_once(corpus_copy, reference, vlm):
    out = corpus_copy
    before = listed_samples(out)
    args = ["caption", str(out), "--url", vlm.url, "--model", "test-vlm", "--quiet"]
    for point in FAILPOINTS:
        res = run_cli(args, env={"MAKEANYTHING_FAILPOINT": point})
        assert res.returncode == -signal.SIGKILL, (point, res.returncode, res.stderr[-2000:])
        shard_keys(out)  # every tar under its final name is complete
    asked, cached = vlm.settle(), list((out / "caption-cache").rglob("*.json"))
    assert 0 < len(cached) <= len(before)
    res = run_cli(args)
    assert res.returncode == 0, res.stderr[-2000:]
    after = listed_samples(out)
    assert sorted(after) == sorted(before) == reference["keys"] == shard_keys(out)
    assert_captioned(after)
    assert {k: s["json"]["caption"]["template"] for k, s in after.items()} == {
        k: s["txt"] for k, s in before.items()
    }
    # answers the killed runs got are reused from the cache: the last run asks only for the others
    # (a request in flight when its run was killed is lost; its sample is asked again)
    assert vlm.settle() - asked == len(after) - len(cached), (asked, len(cached), len(vlm.requests))
    assert len(list((out / "caption-cache").rglob("*.json"))) == len(after)
    assert no_temp_files(out) == []
    assert inspect_verify(str(out)).returncode == 0


def test_build_with_caption_url_writes_rich_captions_and_reports_them(corpus, vlm, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    vlm.expect_key = SECRET
    manifest = tmp_path / "one.yaml"
    manifest.write_text(
        "sources:\n  - {path: %s, task: portrait, id: astro, subject: an astronaut}\n"
        % (corpus / "astronaut.mp4")
    )
    out = tmp_path / "out"
    config = write_config(tmp_path, caption={"api_key_env": KEY_ENV})
    assert (
        main(
            [
                "build",
                str(manifest),
                "--out",
                str(out),
                "--config",
                str(config),
                "--quiet",
                "--caption-url",
                vlm.url,
                "--caption-model",
                "test-vlm",
            ]
        )
        == 0
    )
    samples = listed_samples(out)
    assert list(samples) == ["portrait_astro_s0"]
    assert_captioned(samples)
    s = samples["portrait_astro_s0"]
    assert (
        s["json"]["caption"]["template"]
        == "3*3 of 9 sub-images, step-by-step portrait painting process, an astronaut"
    )
    assert s["json"]["source"]["subject"] == "an astronaut"
    user = vlm.requests[0]["body"]["messages"][1]["content"][0]["text"]
    assert "The subject is an astronaut." in user and "portrait painting process" in user
    report = json.loads((out / "report.json").read_text())
    assert report["caption"]["captioned"] == 1 and report["caption"]["requests"] == 1
    assert report["config_sha"] == json.loads((out / "dataset.json").read_text())["config_sha"]
    assert not [p for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    # the same build without captions has the same config hash: captions never force a --rebuild
    plain = tmp_path / "plain"
    assert main(["build", str(manifest), "--out", str(plain), "--config", str(config), "--quiet"]) == 0
    assert json.loads((plain / "report.json").read_text())["config_sha"] == report["config_sha"]


def test_budget_leaves_a_partly_captioned_corpus_that_readers_load_and_a_rerun_completes(
    corpus_copy, vlm, capsys
):
    from datasets import load_dataset

    from pipeline.corpus.schema import features

    out = corpus_copy
    args = [
        "caption",
        str(out),
        "--url",
        vlm.url,
        "--model",
        "test-vlm",
        "--quiet",
        "--json",
        "--config",
        str(write_config(out.parent, caption={"max_concurrency": 1})),
    ]
    assert main(args + ["--budget", "2"]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert summary["captioned"] == 2 and summary["requests"] == 2 and summary["fallback"] == 2
    assert "caption budget of 2 requests reached: 2 samples were not asked" in printed.err
    index = json.loads((out / "dataset.json").read_text())
    files = [str(out / "shards" / s["name"]) for s in index["shards"]]  # the old, uncaptioned shards first
    ds = load_dataset("webdataset", data_files={"train": files}, split="train", features=features())
    models = [row["json"]["caption"]["model"] for row in ds]
    assert len(ds) == 4 and models[:2] == [None, None] and models[2:] == ["test-vlm", "test-vlm"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["captioned"] == 2 and len(vlm.requests) == 4
    assert_captioned(listed_samples(out))
