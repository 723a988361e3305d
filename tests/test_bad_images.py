"""A step folder holding one decompression-bomb PNG (40,000 x 40,000 in its header) is built from the rest,
the bad image skipped with its reason in the report, like a corrupt JPEG; too few left: rejected, not failed."""

from __future__ import annotations

import json

import skimage.data
import yaml

from makeanything.cli import main
from tests.live_corpus import small, write_config
from tests.mixed_corpus import write_steps
from tests.refresh_support import png_bomb


def test_a_bomb_in_a_step_folder_is_skipped_with_its_reason(tmp_path):
    write_steps(tmp_path / "steps" / "rocket", small(skimage.data.rocket()), 4)
    png_bomb(tmp_path / "steps" / "rocket" / "step_03b.png")  # between two good steps
    (tmp_path / "steps" / "rocket" / "step_03c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    write_steps(tmp_path / "steps" / "cat", small(skimage.data.chelsea()), 1)
    png_bomb(tmp_path / "steps" / "cat" / "step_02.png")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"dir": "steps/rocket", "task": "emoji", "id": "rocket"},
                    {"dir": "steps/cat", "task": "painting", "id": "cat"},
                ]
            }
        )
    )
    out = tmp_path / "out"
    assert (
        main(["build", str(manifest), "--out", str(out), "--config", str(write_config(tmp_path)), "--quiet"])
        == 0
    )
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in json.loads((out / "report.json").read_text())["sources"]}
    rocket, cat = rows["rocket"], rows["cat"]
    assert rocket["status"] == "ok" and len(rocket["samples"]) == 1
    assert rocket["drops"]["unreadable image"] == 2  # the bomb and the corrupt JPEG alike
    bomb = [n for n in rocket["notes"] if n.startswith("step_03b.png: unreadable image")]
    assert bomb and "decompression bomb" in bomb[0]
    assert any(n.startswith("step_03c.jpg: unreadable image") for n in rocket["notes"])
    assert cat["status"] == "rejected" and "folder has 1 readable image(s)" in cat["reason"]
