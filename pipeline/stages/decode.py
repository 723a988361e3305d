"""Decode: one pass that keeps frames at analysis rate and resolution (memory stays bounded).

The decoder sees only what the sampled frames need: frames come out in presentation order, so once every
grid point up to the end of a group of pictures (keyframe to keyframe) has its frame, the rest of that
group is never sent to it and the decoder restarts at the next keyframe where a frame is still wanted
(long videos sampled more sparsely than their keyframes skip most groups); non-reference frames
(B-frames) are not decoded at all. Kept frames are scaled straight to the analysis size by one swscale
context (bilinear); frames decoded but not kept are never converted. This is why a build costs less than a plain
full decode.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.config import AnalysisConfig
from pipeline.work import Frame, Reject, Work

EPS = 1e-6  # time tolerance of the sampling grid
MARGIN = 1e-3  # the rest of a group of pictures is left out only when no grid point comes within this of it
RUN_BYTES = 32 << 20  # packets held at once, at most (one group of pictures, or a piece of a long one)


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)


def _rotate(img: np.ndarray, degrees: int) -> np.ndarray:
    """Undo the display rotation so frames look the way players show them."""
    return np.ascontiguousarray(np.rot90(img, k=degrees // 90)) if degrees % 360 else img


class Sampler:
    """The first frame at or after each point of the grid 0, step, 2 step, ... (times from the video's start)."""

    def __init__(self, step: float) -> None:
        self.step, self.next_t = step, 0.0

    def take(self, t: float) -> bool:
        """Whether the frame presented at ``t`` (frames come in presentation order) is sampled."""
        if t + EPS < self.next_t:
            return False
        while self.next_t <= t + EPS:  # stay on the grid: no drift
            self.next_t += self.step
        return True

    def done(self, upto: float) -> bool:
        """Whether every grid point up to ``upto`` has its frame: no frame presented by then is sampled."""
        return self.next_t > upto + EPS + MARGIN


def _runs(packets: Iterator[av.Packet], max_bytes: int) -> Iterator[tuple[list[av.Packet], bool]]:
    """Packets from one keyframe to the next (groups of pictures; the first may lack its keyframe), each
    with whether it is whole. A group larger than ``max_bytes`` (a stream with few or no keyframes) comes
    in pieces that are not whole: memory stays bounded, and pieces are always decoded. The demuxer's
    empty end-of-stream packet is left out: the caller drains the decoder itself."""
    run: list[av.Packet] = []
    size, whole = 0, True
    for pkt in packets:
        if pkt.size == 0 and pkt.dts is None:
            continue
        if pkt.is_keyframe and run:
            yield run, whole
            run, size, whole = [], 0, True
        elif size > max_bytes:
            yield run, False
            run, size, whole = [], 0, False
        run.append(pkt)
        size += pkt.size
    if run:
        yield run, whole


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
        sampler, scaler = Sampler(step), VideoReformatter()
        frames: list[Frame] = []
        decoded, last_t, floor_t = 0, 0.0, -math.inf

        def out(f: av.VideoFrame) -> None:
            nonlocal decoded, last_t
            decoded += 1
            if f.pts is None:
                return
            t = last_t = float(f.pts * tb) - p["start"]
            # Frames shown before the keyframe the decoder restarted at (an open GOP's leading pictures)
            # may refer to packets it never saw: never sampled.
            if t + EPS >= floor_t and sampler.take(t):
                # One context, one thread: a context per frame with a thread per core (PyAV's default)
                # costs a third as much again as the scaling itself. Same pixels as PyAV's to_ndarray.
                img = scaler.reformat(f, w, h, "rgb24", threads=1).to_ndarray()
                frames.append(
                    Frame(
                        source_frame=int(round(t * p["fps"])),
                        time=round(t, 4),
                        image=_rotate(img, p["rotation"]),
                    )
                )

        try:
            with av.open(work.source.path) as c:
                stream = c.streams.video[0]
                tb, codec = float(stream.time_base), stream.codec_context
                # Frame (and slice) threading: the output is bit-identical, and a core left idle by the
                # other workers (the last sources of a run, a run of one video) is put to use.
                stream.thread_type, stream.thread_count = "AUTO", self.threads
                if self.cfg.skip_nonref:  # B-frames are never sampled: decoding them is wasted work
                    codec.skip_frame = "NONREF"

                def drain() -> None:
                    for f in codec.decode(None):
                        out(f)

                pending, gap = False, False  # frames may wait in the decoder; packets were left out
                for run, whole in _runs(c.demux(stream), RUN_BYTES):
                    times = [float(q.pts * tb) - p["start"] for q in run if q.pts is not None]
                    upto = max(times) if whole and len(times) == len(run) else math.inf  # inf: decode it all
                    for q in run:
                        if gap and pending:  # the sampler must see every frame fed before it is asked
                            drain()
                            pending = False
                        if sampler.done(upto):  # no frame of the rest of this run is sampled
                            gap = True
                            break
                        if gap:  # restart the decoder at this run's keyframe
                            codec.flush_buffers()
                            floor_t = float(q.pts * tb) - p["start"] if q.pts is not None else -math.inf
                            gap = False
                        pending = True
                        for f in codec.decode(q):
                            out(f)
                if pending:
                    drain()
        except av.error.FFmpegError as e:
            raise Reject(
                f"decoding failed after {decoded} frames ({last_t:.1f}s of {duration:.1f}s): {e}"
            ) from None
        if decoded <= 1:
            raise Reject(f"only {decoded} decodable frame(s): a still image, not a video of a process")
        if duration and last_t + 2 * step < 0.9 * duration:
            raise Reject(f"truncated: frames stop at {last_t:.1f}s of a {duration:.1f}s video")
        work.probe["decoded_frames"], work.probe["decode_threads"] = decoded, self.threads
        work.frames = frames
        return work

    def _images(self, work: Work) -> Work:
        frames = []
        for n, path in enumerate(work.source.images):
            try:
                with Image.open(path) as im:
                    img = ImageOps.exif_transpose(im).convert("RGB")
            except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:  # one bad file
                work.drops["unreadable image"] += 1
                work.notes.append(f"{Path(path).name}: unreadable image ({e})")
                continue
            img.thumbnail((self.cfg.max_side, self.cfg.max_side), Image.Resampling.LANCZOS)
            frames.append(Frame(source_frame=n, file=Path(path).name, time=None, image=np.asarray(img)))
        if len(frames) < 2:
            raise Reject(f"folder has {len(frames)} readable image(s); a sequence needs at least 2")
        work.frames = frames
        return work
