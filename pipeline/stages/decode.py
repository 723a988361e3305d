"""Decode: one linear pass that keeps frames at analysis rate and resolution (memory stays bounded).

Non-reference frames (B-frames) are not decoded at all; other frames not kept are decoded but never
converted or scaled; kept frames are scaled straight to the analysis size by swscale. This is why a
build costs less than a plain full-resolution decode.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.config import AnalysisConfig
from pipeline.work import Frame, Reject, Work


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)


def _rotate(img: np.ndarray, degrees: int) -> np.ndarray:
    """Undo the display rotation so frames look the way players show them."""
    return np.ascontiguousarray(np.rot90(img, k=degrees // 90)) if degrees % 360 else img


class Decode:
    name = "decode"

    def __init__(self, cfg: AnalysisConfig, threads: int = 2) -> None:
        self.cfg, self.threads = cfg, threads

    def __call__(self, work: Work) -> Work:
        if work.source.kind == "images":
            return self._images(work)
        p = work.probe
        duration = p["duration"] or (p["frame_count"] or 0) / p["fps"]
        step = max(1.0 / self.cfg.rate, duration / self.cfg.max_frames)
        w, h = _fit(p["width"], p["height"], self.cfg.max_side)
        frames: list[Frame] = []
        decoded, next_t, last_t = 0, 0.0, 0.0
        try:
            with av.open(work.source.path) as c:
                stream = c.streams.video[0]
                # Frame (and slice) threading: the output is bit-identical, and a core left idle by the
                # other workers (the last sources of a run, a run of one video) is put to use.
                stream.thread_type, stream.thread_count = "AUTO", self.threads
                if self.cfg.skip_nonref:  # B-frames are never sampled: decoding them is wasted work
                    stream.codec_context.skip_frame = "NONREF"
                for f in c.decode(stream):
                    decoded += 1
                    if f.pts is None:
                        continue
                    t = float(f.pts * stream.time_base) - p["start"]
                    last_t = t
                    if t + 1e-6 < next_t:
                        continue
                    img = f.to_ndarray(format="rgb24", width=w, height=h)
                    frames.append(Frame(source_frame=int(round(t * p["fps"])), time=round(t, 4),
                                        image=_rotate(img, p["rotation"])))
                    while next_t <= t + 1e-6:  # stay on the sampling grid: no drift
                        next_t += step
        except av.error.FFmpegError as e:
            raise Reject(f"decoding failed after {decoded} frames ({last_t:.1f}s of {duration:.1f}s): {e}") from None
        if decoded <= 1:
            raise Reject(f"only {decoded} decodable frame(s): a still image, not a video of a process")
        if duration and last_t + 2 * step < 0.9 * duration:
            raise Reject(f"truncated: frames stop at {last_t:.1f}s of a {duration:.1f}s video")
        work.probe["decoded_frames"] = decoded
        work.frames = frames
        return work

    def _images(self, work: Work) -> Work:
        frames = []
        for n, path in enumerate(work.source.images):
            try:
                with Image.open(path) as im:
                    img = ImageOps.exif_transpose(im).convert("RGB")
            except (UnidentifiedImageError, OSError) as e:
                work.drops["unreadable image"] += 1
                work.notes.append(f"{Path(path).name}: unreadable image ({e})")
                continue
            img.thumbnail((self.cfg.max_side, self.cfg.max_side), Image.Resampling.LANCZOS)
            frames.append(Frame(source_frame=n, file=Path(path).name, time=None, image=np.asarray(img)))
        if len(frames) < 2:
            raise Reject(f"folder has {len(frames)} readable image(s); a sequence needs at least 2")
        work.frames = frames
        return work
