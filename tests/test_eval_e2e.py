"""Adapters, the CLIP scorer on a tiny random open_clip model, and `makeanything evaluate` end to end.

The random model is written as a local checkpoint and loaded by path, the same route real weights
take; random weights give meaningless scores, so these tests check wiring and bookkeeping, and the
exact metric values come from the pixel backbone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from evaluation import cli
from evaluation.clip_model import WeightsUnavailable, load_clip
from evaluation.config import ClipConfig
from evaluation.inputs import load_inputs
from evaluation.sequence import InputError
from pipeline.corpus.shards import Sample, ShardWriter, encode_jpeg
from pipeline.layout import Layout, tile
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load()


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> ClipConfig:
    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / "eval-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "eval-tiny.json")
    torch.manual_seed(0)
    torch.save(open_clip.create_model("eval-tiny", pretrained=None).state_dict(), folder / "tiny.pt")
    return ClipConfig(
        model="eval-tiny",
        pretrained=str(folder / "tiny.pt"),
        model_config_path=folder / "eval-tiny.json",
        device="cpu",
    )


def solid(color, side=32) -> Image.Image:
    return Image.new("RGB", (side, side), color)


def mean_color(img: Image.Image) -> tuple:
    return tuple(int(round(v)) for v in np.asarray(img, dtype=float).reshape(-1, 3).mean(0))


def fade(side: int = 64) -> list[Image.Image]:
    """4 exact uint8 frames of a cross-fade from white (image values 255 - 24m, alphas k/3)."""
    rng = np.random.default_rng(1)
    image = 255 - 24 * rng.integers(0, 10, size=(side, side, 3))
    return [Image.fromarray((255 - k * (255 - image) // 3).astype(np.uint8)) for k in range(4)]


def test_clip_scorer_matches_open_clip_directly_and_flags_truncation(tiny_clip):
    scorer = load_clip(tiny_clip)
    assert load_clip(tiny_clip) is scorer  # cached per process
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    short, long = "a red square", " ".join(["painting"] * 40)
    emb, truncated = scorer.embed_texts([short, long])
    assert truncated == [False, True]
    tok = open_clip.get_tokenizer("eval-tiny")
    # the reference is open_clip itself, loaded independently from the same checkpoint
    ref, _, preprocess = open_clip.create_model_and_transforms(
        "eval-tiny", pretrained=str(tiny_clip.pretrained)
    )
    ref.eval()
    with torch.no_grad():
        expect_t = torch.nn.functional.normalize(ref.encode_text(tok([short, long])), dim=-1)
        expect_i = torch.nn.functional.normalize(ref.encode_image(preprocess(img).unsqueeze(0)), dim=-1)
    assert emb == pytest.approx(expect_t.numpy(), abs=1e-5)  # long text: CLIP's own truncation
    assert scorer.embed_images([img]) == pytest.approx(
        expect_i.numpy(), abs=1e-5
    )  # square: letterbox is a no-op


def test_missing_weights_are_reported_not_replaced(tmp_path):
    with pytest.raises(WeightsUnavailable, match="never scores with random weights"):
        load_clip(ClipConfig(model="eval-tiny-missing", pretrained=str(tmp_path / "nope.pt")))


def test_grid_reading_orders_frames_videos_and_bad_rows(tmp_path, taxonomy):
    raster = tile([solid(c) for c in COLORS], Layout(rows=2, cols=2, cell=32, order="raster", separator=0))
    raster.save(tmp_path / "raster.png")
    (tmp_path / "frames").mkdir()
    for i, c in enumerate(COLORS):  # natural order: 2 before 10
        solid(c).save(tmp_path / "frames" / f"f{[1, 2, 10, 11][i]}.png")
    with av.open(str(tmp_path / "v.mp4"), "w") as box:
        stream = box.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(21):
            frame = av.VideoFrame.from_image(solid((i * 12, i * 12, i * 12)))
            box.mux(stream.encode(frame))
        box.mux(stream.encode())
    rows = [
        {"task": "emoji", "prompt": "p", "grid": "raster.png", "layout": {"order": "raster"}},
        {"task": "emoji", "prompt": "p", "grid": "raster.png"},  # the task's own (serpentine) order
        {"task": "emoji", "prompt": "p", "frames": "frames", "steps": ["a", "b", "c", "d"]},
        {"task": "emoji", "prompt": "p", "video": "v.mp4", "frames_k": 5},
        {"task": "emoji", "prompt": "p", "grid": "missing.png"},
        {"task": "no-such-task", "prompt": "p", "frames": "frames"},
        {"task": "emoji", "prompt": "p", "frames": "frames", "video": "v.mp4"},
    ]
    (tmp_path / "sequences.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    items = list(load_inputs([f"other={tmp_path}"], taxonomy))
    seqs = [i for i in items if not isinstance(i, InputError)]
    errs = [i for i in items if isinstance(i, InputError)]
    assert [mean_color(f) for f in seqs[0].frames] == COLORS
    assert [mean_color(f) for f in seqs[1].frames] == [COLORS[0], COLORS[1], COLORS[3], COLORS[2]]
    assert [mean_color(f) for f in seqs[2].frames] == COLORS and seqs[2].grid is None
    assert seqs[3].original_frames == 21 and len(seqs[3].frames) == 5
    grey = [mean_color(f)[0] for f in seqs[3].frames]  # frames 0, 5, 10, 15, 20 of the video
    assert grey == pytest.approx([0, 60, 120, 180, 240], abs=6)
    assert all(s.method == "other" for s in seqs)
    problems = {e.source.rsplit(":", 1)[1]: e.problem for e in errs}
    assert "missing.png" in problems["5"] and "not a readable image" in problems["5"]
    assert "unknown task 'no-such-task'" in problems["6"]
    assert "exactly one of grid, frames, video" in problems["7"]
    assert "8" in problems  # the line that is not JSON


SRC = {"uri": "emoji/src", "sha256": "e" * 64, "kind": "synthetic"}


def write_shard(folder: Path, taxonomy: Taxonomy) -> None:
    task = taxonomy["emoji"]
    layout = Layout(rows=2, cols=2, cell=48, order="serpentine", separator=2)
    with ShardWriter(folder, samples_per_shard=10) as w:
        for n, frames in enumerate([fade(), fade()[::-1]]):
            caption = "Step-by-step emoji process, " + " ".join(f"<image-{i}> step {i}" for i in range(1, 5))
            key = f"emoji_src_s{n}"
            w.write(
                Sample(
                    key,
                    encode_jpeg(tile(frames, layout), quality=100),
                    caption,
                    made_meta(key, task.describe(), layout.describe(), caption, **SRC),
                )
            )
        w.write(
            Sample(
                "emoji_src_s9",
                b"not a jpeg",
                "x",
                made_meta("emoji_src_s9", task.describe(), layout.describe(), "x", **SRC),
            )
        )


def run_cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["evaluate", *argv])
    return args.func(args)


def test_evaluate_end_to_end_with_judge(tmp_path, taxonomy, tiny_clip, monkeypatch):
    write_shard(tmp_path / "data" / "shards", taxonomy)
    (tmp_path / "other" / "f").mkdir(parents=True)
    for i, f in enumerate(fade()):
        f.save(tmp_path / "other" / "f" / f"{i}.png")
    (tmp_path / "other" / "sequences.jsonl").write_text(
        json.dumps({"task": "emoji", "prompt": "Step-by-step emoji process", "frames": "f"})
        + "\n"
        + json.dumps({"task": "emoji", "prompt": "x", "grid": "gone.png"})
        + "\n"
    )
    out = tmp_path / "out"
    code = run_cli(
        [
            f"ours={tmp_path / 'data'}",
            f"other={tmp_path / 'other'}",
            "--out",
            str(out),
            "--clip-model",
            tiny_clip.model,
            "--clip-pretrained",
            tiny_clip.pretrained,
            "--clip-model-config",
            str(tiny_clip.model_config_path),
            "--device",
            "cpu",
            "--backbone",
            "pixel",
            "--bootstrap",
            "200",
            "--judge-replay",
            "--judge-cache",
            str(tmp_path / "empty-cache"),
        ]
    )
    assert code == 0
    rows = [json.loads(ln) for ln in (out / "sequences.jsonl").read_text().splitlines()]
    assert [(r["method"], r["key"]) for r in rows] == [
        ("ours", "emoji_src_s0"),
        ("ours", "emoji_src_s1"),
        ("other", "sequences-1"),
    ]
    forward, backward, other = rows
    # JPEG at quality 100 is nearly lossless: the fade stays monotone, the reversed one erases detail
    assert (
        forward["progress"]["spearman"] == pytest.approx(1.0) and forward["progress"]["detail_trend"] == 1.0
    )
    assert backward["progress"]["detail_trend"] == -1.0
    # exact frames at the pixel backbone's own size: the curve is exactly the alphas
    assert other["progress"]["curve"] == pytest.approx([0, 1 / 3, 2 / 3, 1], abs=1e-9)
    assert len(forward["clip"]["frames"]) == 4 and forward["clip"]["prompt_truncated"] is False
    assert other["clip"]["grid_composed"] is True and other["clip"]["frames"] is None
    assert 0 <= forward["clip"]["grid"] <= 100
    assert "replay-only" in forward["judge"]["error"]  # empty cache: recorded, not guessed
    errors = [json.loads(ln) for ln in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["source"].rsplit(":", 1)[-1] for e in errors} == {"emoji_src_s9", "2"}
    pairs = [json.loads(ln) for ln in (out / "judge-pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 1 and pairs[0]["methods"] == ["other", "ours"] and pairs[0]["consistent"] is None
    md = (out / "report.md").read_text()
    assert "Table 1 layout" in md and "| Emoji |" in md and "34.20" in md  # the paper's Emoji value
    assert "emoji_src_s9" in md and "gone.png" in md
    html = (out / "report.html").read_text()
    for png in [
        "plots/bar_clip.png",
        "plots/bar_progress.png",
        "plots/progress_emoji.png",
        "strips/0000_emoji.png",
    ]:
        assert png in md and png in html
        with Image.open(out / png) as im:
            assert im.width > 50
    summary = json.loads((out / "summary.json").read_text())
    s = summary["per_task"]["progress"]["ours/emoji"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(1.0)  # both fades are monotone to their end
    assert not list(out.rglob("*.tmp"))


def test_evaluate_refuses_without_weights(tmp_path):
    code = run_cli(
        [
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--clip-model",
            "eval-tiny-missing",
            "--clip-pretrained",
            str(tmp_path / "none.pt"),
        ]
    )
    assert code == 2 and not (tmp_path / "out").exists()
