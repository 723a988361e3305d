"""Quality: inside each process segment drop blurred frames, frames where something transient covers
the work (a hand, a brush, an arm), and near-duplicates (perceptual hash)."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import QualityConfig
from pipeline.stages.process import thumb
from pipeline.work import Frame, Segment, Work

TRANSIENT_TOL = 0.12


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian: low when the frame is blurred."""
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def phash(img: np.ndarray) -> int:
    """64-bit perceptual hash: signs of the low-frequency DCT of a 32x32 grey image."""
    g = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(g)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def _window(times: list[float | None]) -> np.ndarray:
    """Frame times, or frame positions where there are none (image folders)."""
    return np.array([x if x is not None else i for i, x in enumerate(times)], dtype=float)


def _local_median(values: np.ndarray, times: list[float | None], window: float) -> np.ndarray:
    t = _window(times)
    return np.array([np.median(values[np.abs(t - ti) <= window / 2]) for ti in t])


def transient_fraction(thumbs: np.ndarray, times: list[float | None], window: float) -> np.ndarray:
    """Per frame, the fraction of pixels unlike the temporal median of its +-window/2 neighbourhood.

    A median over a centred window keeps steps (paint that arrives and stays) and removes pulses
    shorter than half the window (a hand passing over the work).
    """
    out = np.zeros(len(thumbs))
    t = _window(times)
    for i in range(len(thumbs)):
        near = np.abs(t - t[i]) <= window / 2
        if near.sum() < 3:
            continue
        med = np.median(thumbs[near], axis=0)
        out[i] = float((np.abs(thumbs[i] - med).max(axis=-1) > TRANSIENT_TOL).mean())
    return out


class Quality:
    name = "quality"

    def __init__(self, cfg: QualityConfig) -> None:
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        for seg in work.segments:
            if work.source.kind == "images" and len(seg.frames) <= work.source.task.frames:
                continue  # a curated step set with no spare frames is taken as given
            seg.frames = self._filter(seg, work)
        return work

    def _filter(self, seg: Segment, work: Work) -> list[Frame]:
        frames = seg.frames
        times = [f.time for f in frames]
        sharp = np.array([sharpness(f.image) for f in frames])
        # Sharpness grows as the work fills in, so a frame is judged against its neighbours in time.
        local = _local_median(sharp, times, self.cfg.occlusion_window)
        occ = (transient_fraction(np.stack([thumb(f.image) for f in frames]), times, self.cfg.occlusion_window)
               if work.source.kind == "video" else np.zeros(len(frames)))
        kept: list[Frame] = []
        for f, s, m, o in zip(frames, sharp, local, occ):
            f.scores.update(sharpness=round(float(s), 2), occlusion=round(float(o), 4))
            if s < self.cfg.blur_ratio * m:
                work.drops["blurred"] += 1
            elif o > self.cfg.occlusion_max:
                work.drops["occluded by a transient object"] += 1
            else:
                kept.append(f)
        return self._dedup(kept, work)

    def _dedup(self, frames: list[Frame], work: Work) -> list[Frame]:
        """Of each run of frames that look like the run's first, keep the last: same look, most progress."""
        out: list[Frame] = []
        anchor = -1
        for f in frames:
            f.scores["phash"] = phash(f.image)
            if out and hamming(anchor, f.scores["phash"]) <= self.cfg.phash_distance:
                out[-1] = f
                work.drops["near-duplicate"] += 1
            else:
                out.append(f)
                anchor = f.scores["phash"]
        return out
