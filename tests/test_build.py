"""End to end: `makeanything build` on a LocalCluster with good tutorials and every kind of bad input;
the shards read back with webdataset and with Hugging Face datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from makeanything.cli import main
from pipeline.demo.synthetic import _talking_head, write_video
from pipeline.layout import Layout, split
from tests.conftest import OPENCV_DATA, write_manifest


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.fixture(scope="module")
def built(tutorials, tmp_path_factory):
    d = tmp_path_factory.mktemp("build")
    good = {name: shutil.copy(p, d / f"{name}.mp4") for name, (p, _) in tutorials.items()}
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is a text file with a video's name\n" * 50)
    data = Path(good["astronaut"]).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 3 : len(data) // 3 + 20000] = (
        np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    )
    (d / "corrupt.mp4").write_bytes(bytes(corrupt))
    _audio_only(d / "audio.mp4")
    write_video(d / "one_frame.mp4", [np.full((180, 320, 3), 200, np.uint8)], 25, (320, 180))
    write_video(d / "talk.mp4", (_talking_head(180, 320, i / 25) for i in range(150)), 25, (320, 180))
    sources = [
        {"path": "astronaut.mp4", "task": "portrait", "subject": "an astronaut"},
        {"path": "coffee.mp4", "task": "oil-painting", "subject": "a cup of coffee"},
        {"glob": "chel*.mp4", "task": "painting"},
        {"path": "missing.mp4", "task": "painting"},
        {"path": "empty.mp4", "task": "painting"},
        {"path": "notes.mp4", "task": "painting"},
        {"path": "truncated.mp4", "task": "painting"},
        {"path": "corrupt.mp4", "task": "painting"},
        {"path": "audio.mp4", "task": "painting"},
        {"path": "one_frame.mp4", "task": "painting"},
        {"path": "talk.mp4", "task": "painting"},
        {"path": "astronaut.mp4", "task": "portrait", "subject": "listed twice"},
    ]
    if (OPENCV_DATA / "vtest.avi").exists():
        sources.append({"path": str(OPENCV_DATA / "vtest.avi"), "task": "painting"})
    manifest = write_manifest(d, sources)
    out = d / "out"
    assert main(["build", str(manifest), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    return out, json.loads((out / "report.json").read_text())


def _row(report: dict, uri: str) -> dict:
    return next(r for r in report["sources"] if r["uri"].endswith(uri))


@pytest.mark.parametrize(
    "uri,status,reason",
    [
        ("missing.mp4", "rejected", "file not found"),
        ("empty.mp4", "rejected", "empty file (0 bytes)"),
        ("notes.mp4", "rejected", "not a readable video"),
        ("truncated.mp4", "rejected", "truncated"),
        ("corrupt.mp4", "rejected", ""),
        ("audio.mp4", "rejected", "no video stream"),
        ("one_frame.mp4", "rejected", "only 1 decodable frame"),
        ("talk.mp4", "rejected", "no making process"),
        ("vtest.avi", "rejected", "no making process"),
    ],
)
def test_bad_input_is_recorded_with_its_reason(built, uri, status, reason):
    _, report = built
    if uri == "vtest.avi" and not (OPENCV_DATA / uri).exists():
        pytest.skip("opencv-doc not installed")
    row = _row(report, uri)
    assert row["status"] == status and reason in row["reason"], row
    assert row["reason"], "a rejection must say why"
    assert not row["samples"]


def test_same_video_listed_twice_is_processed_once(built):
    _, report = built
    rows = [r for r in report["sources"] if r["uri"] == "astronaut.mp4"]
    assert [r["status"] for r in rows] == ["ok", "duplicate"]
    assert "duplicate of sources[0]" in rows[1]["reason"]


def test_report_counts_and_pictures(built):
    out, report = built
    assert report["totals"]["ok"] == 3 and report["totals"]["failed"] == 0
    assert report["per_task"] == {"oil-painting": 1, "painting": 1, "portrait": 1}
    assert report["drops"]["frames"]["occluded by a transient object"] > 0
    assert set(report["stage_seconds"]) >= {"probe", "decode", "segment", "process", "quality", "select"}
    for task in report["per_task"]:
        assert Image.open(out / f"contact-{task}.png").size[0] > 0
    assert "## Sources without sequences" in (out / "report.md").read_text()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.part"))


def test_shards_read_back_with_webdataset(built):
    import webdataset as wds

    out, report = built
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    assert sorted(s["__key__"] for s in samples) == sorted(k for r in report["sources"] for k in r["samples"])
    for s in samples:
        meta = s["json"]
        assert "." not in s["__key__"] and meta["key"] == s["__key__"]
        assert s["txt"] == meta["caption"]["text"]
        lay = Layout(**{k: meta["layout"][k] for k in ("rows", "cols", "cell", "order", "separator")})
        assert s["jpg"].size == lay.size and len(split(s["jpg"], lay)) == len(meta["frames"])
        assert [f["step"] for f in meta["frames"]] == list(range(1, len(meta["frames"]) + 1))
        assert meta["task"]["head"] >= 1 and len(meta["source"]["sha256"]) == 64
        assert meta["pipeline"]["config_sha"] == report["config_sha"]
    portrait = next(s for s in samples if s["json"]["task"]["id"] == "portrait")
    assert portrait["txt"] == "3*3 of 9 sub-images, step-by-step portrait painting process, an astronaut"


def test_shards_read_back_with_hf_datasets(built):
    from datasets import load_dataset

    out, report = built
    ds = load_dataset("webdataset", data_files={"train": str(out / "shards" / "*.tar")}, split="train")
    assert len(ds) == report["totals"]["samples"]
    row = ds[0]
    assert isinstance(row["json"], dict) and row["json"]["caption"]["text"] == row["txt"]
    assert row["jpg"].size == tuple(row["json"]["layout"]["size"])


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"path": "a.mp4", "task": "watercolor"}, "sources[0].task: unknown task 'watercolor'"),
        ({"path": "a.mp4", "dir": "x", "task": "lego"}, "give exactly one of path, glob, dir, url"),
        ({"url": "ftp://host/a.mp4", "task": "lego"}, "url 'ftp://host/a.mp4' must be http://"),
        ({"path": "a.mp4", "task": "lego", "colour": "red"}, "sources[0].colour"),
    ],
)
def test_manifest_errors_exit_2_before_any_work(tmp_path, capsys, entry, message):
    manifest = write_manifest(tmp_path, [entry])
    assert main(["build", str(manifest), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
