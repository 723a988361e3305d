"""One evaluation run: read inputs, score each sequence, ask the judge, hand everything to the report."""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from evaluation.backbones import FeatureBackbone, PixelBackbone, TextImageScorer
from evaluation.config import EvalConfig
from evaluation.inputs import load_inputs
from evaluation.judge import Judge
from evaluation.metrics.clip_score import clip_score
from evaluation.metrics.coherence import coherence
from evaluation.metrics.progress import detail_trend, progress
from evaluation.render import grid, jpeg, strip
from evaluation.sequence import InputError, Sequence
from pipeline.io.atomic import write_bytes
from pipeline.taxonomy import Taxonomy

log = logging.getLogger(__name__)
JUDGE_CELL, STRIP_CELL, COMPOSED_CELL = 256, 128, 224


@dataclass
class RunResult:
    records: list[dict] = field(default_factory=list)  # one per evaluated sequence (the JSONL rows)
    errors: list[dict] = field(default_factory=list)  # inputs or sequences that could not be evaluated
    pairs: list[dict] = field(default_factory=list)  # side-by-side judge comparisons
    snapshots: dict[str, int | None] = field(
        default_factory=dict
    )  # corpus input -> the snapshot it was read at
    strips: dict[tuple[str, str], dict[str, Image.Image]] = field(
        default_factory=dict
    )  # (task, prompt) -> method -> strip


def clip_record(seq: Sequence, scorer: TextImageScorer) -> tuple[dict, list]:
    """Grid-vs-prompt and frame-vs-step CLIP scores, plus the frame embeddings for reuse."""
    image = seq.grid if seq.grid is not None else grid(seq.frames, COMPOSED_CELL)
    emb = scorer.embed_images([image] + seq.frames)
    texts = [seq.prompt] + (seq.steps or [])
    temb, truncated = scorer.embed_texts(texts)
    rec = {
        "grid": float(clip_score(emb[0], temb[0])[0]),
        "grid_composed": seq.grid is None,
        "prompt_truncated": truncated[0],
        "frames": None,
        "frames_mean": None,
        "steps_truncated": None,
    }
    if seq.steps:
        frames = clip_score(emb[1:], temb[1:])
        rec.update(
            frames=[float(v) for v in frames],
            frames_mean=float(frames.mean()),
            steps_truncated=sum(bool(t) for t in truncated[1:]),
        )
    return rec, emb[1:]


def evaluate_sequence(
    seq: Sequence, scorer: TextImageScorer | None, backbone: FeatureBackbone, cfg: EvalConfig
) -> dict:
    if len(seq.frames) < 2:
        raise ValueError(f"has {len(seq.frames)} frame(s); coherence and progress need at least 2")
    rec = {
        "key": seq.key,
        "method": seq.method,
        "task": seq.task,
        "prompt": seq.prompt,
        "source": seq.source,
        "frames": len(seq.frames),
        "original_frames": seq.original_frames,
        "layout": seq.layout,
        "clip": None,
    }
    features = None
    if scorer is not None:
        rec["clip"], frame_emb = clip_record(seq, scorer)
        if backbone is scorer:
            features = frame_emb
    if features is None:
        features = backbone.embed_images(seq.frames)
    sim = backbone.similarity(features)
    dup = (
        cfg.metrics.duplicate_distance
        if cfg.metrics.duplicate_distance is not None
        else backbone.duplicate_distance
    )
    rec["coherence"] = coherence(sim, dup, cfg.metrics.jump_fraction)
    rec["progress"] = progress(sim, dup) | {"detail_trend": detail_trend(seq.frames)}
    return rec


def compare_pairs(
    judge: Judge, images: dict[tuple[str, str], dict[str, Path]], taxonomy: Taxonomy
) -> list[dict]:
    """Every pair of methods on every shared prompt, asked in both orders (position bias shows as disagreement)."""
    pairs = []
    for (task, prompt), by_method in images.items():
        for a, b in itertools.combinations(sorted(by_method), 2):
            name = taxonomy[task].name
            img_a, img_b = by_method[a].read_bytes(), by_method[b].read_bytes()
            ab = judge.compare(img_a, img_b, name, prompt)
            ba = judge.compare(img_b, img_a, name, prompt)
            win_ab = (a, b)[ab.value["better"] - 1] if ab.ok else None
            win_ba = (b, a)[ba.value["better"] - 1] if ba.ok else None
            both = win_ab is not None and win_ba is not None
            pairs.append(
                {
                    "task": task,
                    "prompt": prompt,
                    "methods": [a, b],
                    "first_order": ab.describe(),
                    "second_order": ba.describe(),
                    "consistent": (win_ab == win_ba) if both else None,
                    "winner": win_ab if both and win_ab == win_ba else None,
                }
            )
    return pairs


def run(
    specs: list[str], cfg: EvalConfig, out: Path, scorer: TextImageScorer | None, taxonomy: Taxonomy
) -> RunResult:
    """Evaluate every input; `scorer` None means CLIP scores are off (and the pixel backbone is used)."""
    backbone: FeatureBackbone = (
        scorer
        if cfg.metrics.backbone == "clip" and scorer is not None
        else PixelBackbone(cfg.metrics.pixel_side)
    )
    judge = Judge(cfg.judge, cfg.judge.cache_dir or out / "judge-cache") if cfg.judge.enabled else None
    result = RunResult()
    judge_images: dict[tuple[str, str], dict[str, Path]] = {}  # kept on disk, not in memory
    for item in load_inputs(specs, taxonomy, cfg.video_frames, result.snapshots):
        if isinstance(item, InputError):
            log.warning("skipping %s: %s", item.source, item.problem)
            result.errors.append(item.describe())
            continue
        try:
            rec = evaluate_sequence(item, scorer, backbone, cfg)
        except Exception as exc:  # one bad sequence must not end the run; the error names it
            log.warning("cannot evaluate %s: %s", item.source, exc)
            result.errors.append(InputError(item.source, f"evaluation failed: {exc}", item.method).describe())
            continue
        group = (item.task, item.prompt)
        if group in result.strips or len(result.strips) < cfg.report.max_strips:
            result.strips.setdefault(group, {}).setdefault(item.method, strip(item.frames, STRIP_CELL))
        if judge is not None:
            image = jpeg(strip(item.frames, JUDGE_CELL))
            rec["judge"] = judge.score(
                image, taxonomy[item.task].name, item.prompt, len(item.frames)
            ).describe()
            if item.method not in judge_images.setdefault(group, {}):
                path = out / "judge-images" / f"{hashlib.sha256(image).hexdigest()[:20]}.jpg"
                judge_images[group][item.method] = write_bytes(path, image)
        result.records.append(rec)
    if judge is not None and cfg.judge.compare:
        result.pairs = compare_pairs(judge, judge_images, taxonomy)
    return result
