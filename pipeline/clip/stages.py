"""The two pipeline stages: ClipFilter (after quality, on segments) and ClipScore (after caption, on sequences).

Stages carry only a ClipSpec and the config, so Dask ships them cheaply; the model is loaded by
the first task on each worker process (pipeline.clip.model.load) and reused by the rest.
"""

from __future__ import annotations

import numpy as np

from pipeline.clip.decide import clip_score, duplicate_groups, normalize, progress_order, relevance
from pipeline.clip.model import ClipModel, ClipSpec, load
from pipeline.config import ClipConfig
from pipeline.work import Frame, Reject, Segment, Work


def _keeper(frames: list[Frame], group: list[int]) -> int:
    """The frame a duplicate group keeps: the sharpest (quality stage score), ties to the latest."""
    return max(group, key=lambda i: (frames[i].scores.get("sharpness", 0.0), i))


class ClipFilter:
    """Drops off-task shots and frames, merges semantic near-duplicates, orders unordered sources.

    Writes per-frame `clip_relevance` (best cosine to a task prompt) and `clip_margin` (that minus
    the best negative cosine), per-segment the same for the shot's mean embedding, and for unordered
    sources `clip_progress` per frame plus `clip_order_confidence` / `clip_order_direction`.
    Each kept frame carries its embedding (Frame.embedding).
    """

    name = "clip"

    def __init__(self, spec: ClipSpec, cfg: ClipConfig) -> None:
        self.spec = spec
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        frames = [f for seg in work.segments for f in seg.frames]
        if not frames:
            return work
        model = load(self.spec)
        emb = model.embed_images((f.image for f in frames), self.cfg.batch_size)
        bounds = np.cumsum([0] + [len(seg.frames) for seg in work.segments])
        kept = [
            seg
            for seg, lo, hi in zip(work.segments, bounds[:-1], bounds[1:])
            if self._segment(work, seg, emb[lo:hi], model)
        ]
        if not kept:
            raise Reject(
                f"clip: no shot or frame matches the {work.source.task.id} prompts better than "
                "the negative prompts"
            )
        work.segments = kept
        return work

    def _segment(self, work: Work, seg: Segment, emb: np.ndarray, model: ClipModel) -> bool:
        """Filter, dedup and (if unordered) order one segment in place; False when nothing is left."""
        task = work.source.task
        pos, neg = model.embed_texts(task.prompts), model.embed_texts(self.cfg.negatives)
        shot = relevance(normalize(emb.mean(axis=0, keepdims=True)), pos, neg)
        seg.scores["clip_relevance"] = round(float(shot.positive[0]), 4)
        seg.scores["clip_margin"] = round(float(shot.margin[0]), 4)
        if not shot.keep(self.cfg.relevance_margin)[0]:
            work.drops[f"clip: shot looks like '{self.cfg.negatives[shot.worst[0]]}'"] += len(seg.frames)
            return False

        rel = relevance(emb, pos, neg)
        keep = rel.keep(self.cfg.relevance_margin)
        for f, p, m, ok, w in zip(
            seg.frames, rel.positive.tolist(), rel.margin.tolist(), keep.tolist(), rel.worst.tolist()
        ):  # Python floats: 4x cheaper per frame than numpy scalars
            f.scores["clip_relevance"] = round(p, 4)
            f.scores["clip_margin"] = round(m, 4)
            if not ok:
                work.drops[f"clip: frame looks like '{self.cfg.negatives[w]}'"] += 1
        frames = [f for f, ok in zip(seg.frames, keep) if ok]
        emb = emb[keep]
        if not frames:
            return False

        groups = duplicate_groups(emb, self.cfg.duplicate_similarity, work.source.ordered)
        if len(groups) < len(frames):
            work.drops["clip: near-duplicate"] += len(frames) - len(groups)
        idx = sorted(_keeper(frames, g) for g in groups)

        if not work.source.ordered:
            ends = model.embed_texts(
                [
                    self.cfg.finished_prompt.format(process=task.process),
                    self.cfg.start_prompt.format(process=task.process),
                ]
            )
            po = progress_order(emb[idx], normalize(ends[0] - ends[1]))
            for i, p in zip(idx, po.progress):
                frames[i].scores["clip_progress"] = round(float(p), 4)
            idx = [idx[j] for j in po.order]
            seg.scores["clip_order_confidence"] = round(po.confidence, 4)
            seg.scores["clip_order_direction"] = round(po.direction, 4)

        seg.frames = [frames[i] for i in idx]
        for i in idx:
            frames[i].embedding = emb[i]
        return True


class ClipScore:
    """Per-sequence CLIP score between caption and grid, torchmetrics' definition: max(100 * cos, 0).

    Stored as Sequence.scores['clip'] (the sample json's `scores.clip`). Captions past the model's
    context length (77 tokens) are truncated, as in torchmetrics.
    """

    name = "clip-score"

    def __init__(self, spec: ClipSpec, cfg: ClipConfig) -> None:
        self.spec = spec
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        if not work.sequences:
            return work
        for n, seq in enumerate(work.sequences):
            if seq.grid is None:
                raise ValueError(
                    f"{work.source.uri}: sequence {n} reached clip-score without a grid "
                    "(the tile stage must run first)"
                )
        model = load(self.spec)
        images = model.embed_images((seq.grid for seq in work.sequences), self.cfg.batch_size)
        texts = model.embed_texts([seq.caption for seq in work.sequences])
        for seq, score in zip(work.sequences, clip_score(images, texts)):
            seq.scores["clip"] = round(float(score), 4)
        return work
