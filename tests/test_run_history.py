"""Run history: every run (build, no-op refresh, caption, curate) gets its own number and its own
reports/run-NNNN/; the root report.md says what the corpus holds; the build report, inspect and the review
site count rejected sources alike, and a no-op refresh does not report a known duplicate again."""

from __future__ import annotations

import json
import shutil

import numpy as np
import yaml

from makeanything.cli import main
from tests.live_corpus import make_sources, write_config
from tests.mixed_corpus import write_steps
from tests.vlm_server import vlm  # noqa: F401 (fixture: a chat-completions server on loopback)


def _json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.splitlines()[-1])


def test_each_run_has_its_number_and_report_and_counts_agree(tmp_path, vlm, capsys):  # noqa: F811
    manifest, config = make_sources(tmp_path, ["rocket"])
    shutil.copytree(tmp_path / "steps" / "rocket", tmp_path / "steps" / "rocket-copy")  # same content
    write_steps(tmp_path / "steps" / "one", np.full((32, 32, 3), 200, np.uint8), 1)
    sources = yaml.safe_load(manifest.read_text())["sources"]
    sources += [
        {"dir": "steps/rocket-copy", "task": "emoji", "id": "copy"},
        {"dir": "steps/one", "task": "emoji", "id": "one"},  # one image: rejected
    ]
    manifest.write_text(yaml.safe_dump({"sources": sources}))
    out = str(tmp_path / "out")
    args = ["--out", out, "--config", str(write_config(tmp_path)), "--quiet"]

    built = _json(capsys, "refresh", str(manifest), *args)  # on an empty output: a build (no --json yet)
    assert (built["run"], built["ok"], built["rejected"], built["duplicates"]) == (1, 1, 1, 1)
    noop = [_json(capsys, "refresh", str(manifest), *args) for _ in range(2)]
    assert [s["run"] for s in noop] == [2, 3]
    assert all((s["processed"], s["rejected"], s["duplicates"], s["skipped"]) == (0, 0, 0, 3) for s in noop)
    captioned = _json(capsys, "caption", out, "--url", vlm.url, "--model", "test-vlm", "--quiet")
    assert captioned["run"] == 4

    inspected = _json(capsys, "inspect", out)
    assert inspected["runs"] == 4
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [(h["run"], h["command"]) for h in index["history"]] == [
        (1, "build"),
        (2, "refresh"),
        (3, "refresh"),
        (4, "caption"),
    ]
    assert index["snapshot"] == 4 and index["sources"]["rejected"] == built["rejected"] == 1
    reports = tmp_path / "out" / "reports"
    assert sorted(p.name for p in reports.iterdir()) == [f"run-000{n}" for n in (1, 2, 3, 4)]
    assert (reports / "run-0003" / "report.md").is_file() and (
        reports / "run-0004" / "caption-report.md"
    ).is_file()
    assert (reports / "run-0002" / "report.json").read_text() != (
        reports / "run-0003" / "report.json"
    ).read_text()
    root = (tmp_path / "out" / "report.md").read_text()
    assert root.startswith("# Corpus\n\n1 sequences in 1 shards (snapshot 4")  # not only what run 4 did
    assert "| [3](reports/run-0003/) | refresh |" in root

    site = _json(capsys, "review", out, "--out", str(tmp_path / "site"))
    assert site["rejected"] == built["rejected"] == index["sources"]["rejected"] and site["snapshot"] == 4
