"""Every subcommand given wrong arguments, as a new user types them: a message, never a traceback; exit 2
for usage errors; nothing created on disk (a mistyped corpus path must not be left behind as a folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from makeanything.cli import main

TINY = Path(__file__).resolve().parent.parent / "training" / "configs" / "tiny.yaml"


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder with a manifest file, a build config with a typo and a training config with one."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifest.yaml").write_text("sources:\n  - {path: a.mp4, task: painting}\n")
    (tmp_path / "typo-manifest.yaml").write_text("sources:\n  - {path: a.mp4, taks: painting}\n")
    (tmp_path / "subjet.yaml").write_text("sources:\n  - {path: a.mp4, task: painting, subjet: a cat}\n")
    (tmp_path / "build.yaml").write_text("select:\n  min_progres_step: 3\n")
    (tmp_path / "train.yaml").write_text(TINY.read_text() + "\nlora:\n  rnak: 4\n")
    return tmp_path


# (argv, what stderr must say); every one is a usage error: exit 2
CASES = [
    (["build", "nope.yaml", "--out", "out"], "manifest file not found"),
    (["build", "manifest.yaml", "--out", "manifest.yaml"], "is a file, not a folder"),
    (["build", "manifest.yaml", "--out", "out", "--workers", "0"], "is not at least 1"),
    (["build", "manifest.yaml"], "--out"),
    (["build", "typo-manifest.yaml", "--out", "out"], "sources[0].taks: unknown key (did you mean 'task'?)"),
    (["build", "subjet.yaml", "--out", "out"], "sources[0].subjet: unknown key (did you mean 'subject'?)"),
    (
        ["build", "manifest.yaml", "--out", "out", "--config", "build.yaml"],
        "build.yaml: select.min_progres_step: unknown key (did you mean 'min_progress_step'?)",
    ),
    (["build", "manifest.yaml", "--out", "out", "--config", "nope.yaml"], "nope.yaml: config file not found"),
    (
        ["refresh", "manifest.yaml", "--out", "out", "--config", "build.yaml", "--json"],
        "select.min_progres_step",
    ),
    (["demo", "--out", "manifest.yaml"], "is a file, not a folder"),
    (["inspect", "nope"], "nope: no such folder"),
    (["inspect", "manifest.yaml"], "is a file, not a corpus folder"),
    (["inspect", "nope", "--json"], "no such folder"),
    (["review", "nope", "--out", "site"], "no such folder"),
    (["vacuum", "nope"], "nope: no such folder"),
    (["vacuum", "manifest.yaml"], "is a file, not a corpus folder"),
    (["review", "nope", "--out", "manifest.yaml"], "--out manifest.yaml: is a file"),
    (["review", "nope", "--out", "site", "--page-size", "0"], "is not at least 1"),
    (["curate", "nope", "--drop", "k", "--reason", "r"], "no such folder"),
    (["caption", "nope", "--url", "http://127.0.0.1:9/v1"], "no such folder"),
    (["caption", "manifest.yaml", "--url", "http://127.0.0.1:9/v1"], "is a file, not a corpus folder"),
    (["train", "nope.yaml"], "nope.yaml: config file not found"),
    (["train", "train.yaml", "--data", "x"], "train.yaml: lora.rnak: unknown key (did you mean 'rank'?)"),
    (["train", str(TINY), "--steps", "0"], "is not at least 1"),
    (["export-lora", "nope", "--task", "painting", "--out", "x.safetensors"], "not a training run directory"),
    (["generate", "nope", "--prompt", "p", "--out", "g"], "neither a run directory nor a LoRA file"),
    (["generate", "nope", "--prompt", "p", "--out", "g", "--steps", "0"], "is not at least 1"),
    (["generate", "nope", "--prompt", "p", "--out", "g", "--head", "0"], "is not at least 1"),
    (
        ["generate", "manifest.yaml", "--prompt", "p", "--out", "g", "--head", "x"],
        "'x' is not a whole number",
    ),
    (["evaluate", "nope", "--out", "ev"], "no input exists"),
    (["evaluate", "manifest.yaml", "--out", "manifest.yaml", "--no-clip"], "is a file"),
    (["evaluate", "nope", "--out", "ev", "--bootstrap", "0"], "is not at least 1"),
    (["nonsense"], "invalid choice"),
]


@pytest.mark.parametrize("argv,said", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_wrong_arguments_give_a_message_exit_2_and_create_nothing(here, capsys, caplog, argv, said):
    before = _tree(here)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    err += caplog.text  # evaluate reports through logging
    assert code == 2, (code, err)
    assert said in err, err
    assert "Traceback" not in err
    assert _tree(here) == before, "a failed command left files behind"
    if "--json" in argv:
        assert out.strip().startswith('{"status": "error"'), out


def test_a_read_only_command_does_not_create_a_mistyped_s3_like_local_path(here, capsys):
    """The one corpus check creates nothing, whatever the depth of the mistyped path."""
    assert main(["inspect", "a/b/c"]) == 2
    assert not os.path.exists(here / "a")


def test_missing_sources_are_listed_the_run_goes_on_and_strict_exits_4(here, capsys):
    """README's policy: a path, folder or glob that is not there is a rejected source with its reason, listed
    on stderr; the run completes with the rest (exit 0), and --strict turns it into exit 4 for cron."""
    (here / "empty").mkdir()
    (here / "steps").mkdir()
    from PIL import Image

    for i in range(6):  # a real step folder, a drawing filled in band by band: the run goes on with it
        img = Image.new("RGB", (128, 128), "white")
        img.paste((20, 20, 20), (8, 8, 120, 8 + 19 * (i + 1)))
        img.save(here / "steps" / f"{i}.png")
    (here / "m.yaml").write_text(
        "sources:\n"
        "  - {path: gone.mp4, task: painting}\n"
        "  - {dir: empty, task: painting}\n"
        "  - {dir: nowhere, task: painting}\n"
        "  - {glob: 'clips/*.mp4', task: painting}\n"
        "  - {dir: steps, task: emoji}\n"
    )
    assert main(["build", "m.yaml", "--out", "out", "--json"]) == 0
    out, err = capsys.readouterr()
    clip_lines = [ln for ln in err.splitlines() if "CLIP stage" in ln]  # one short line, once per run
    assert len(clip_lines) == 1 and len(clip_lines[0]) < 250 and "clip.download" not in clip_lines[0], (
        clip_lines
    )
    for entry, said in (
        (0, "file not found"),
        (1, "folder holds no images"),
        (2, "folder not found"),
        (3, "no files match"),
    ):
        assert f"missing source (manifest entry {entry}): {said}" in err, err
    summary = json.loads(out)
    assert summary["missing"] == 4 and summary["rejected"] == 4 and summary["ok"] == 1, summary
    report = json.loads((here / "out" / "report.json").read_text())
    folder = next(r for r in report["sources"] if r["uri"] == "steps")
    assert any(n.startswith("steps not used (2 of 6): ") for n in folder["notes"]), folder["notes"]
    assert "steps not used (2 of 6)" in (here / "out" / "report.md").read_text()
    assert "Traceback" not in err
    (here / "gone.mp4").write_bytes(b"")  # still not a video, but no longer missing
    assert main(["build", "m.yaml", "--out", "out2", "--quiet", "--strict"]) == 4
    err = capsys.readouterr().err
    assert "--strict: 0 failed and 3 missing source(s) in this run (exit 4)" in err
    assert "CLIP stage" not in err  # --quiet: the report has it


def test_a_removed_config_key_says_what_replaced_it(tmp_path, capsys):
    """select.min_distinct went when steps came to be told apart by a share of the whole process's change:
    an old build.yaml names its successor instead of only failing."""
    (tmp_path / "m.yaml").write_text("sources: []\n")
    (tmp_path / "old.yaml").write_text("select:\n  min_distinct: 0.01\n")
    code = main(
        [
            "build",
            str(tmp_path / "m.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "old.yaml"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "select.min_distinct: unknown key (removed: now progress.min_share" in err
    assert not (tmp_path / "out").exists()
