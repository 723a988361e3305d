"""Probe: can this file be read as a video, and what is it (duration, fps, frames, size, codec, rotation)?"""

from __future__ import annotations

import os

import av

from pipeline.work import Reject, Work


class Probe:
    name = "probe"

    def __call__(self, work: Work) -> Work:
        src = work.source
        if src.problem:  # known at intake (a folder with no images, a glob that matches nothing)
            raise Reject(src.problem)
        if src.kind == "images":
            work.probe = {"kind": "images", "frame_count": len(src.images)}
            return work
        path = src.path
        if not os.path.exists(path):
            raise Reject(f"file not found: {path}")  # a MISSING_KINDS reason
        if os.path.getsize(path) == 0:
            raise Reject(f"empty file (0 bytes): {path}")
        try:
            with av.open(path) as c:
                if not c.streams.video:
                    kinds = ", ".join(sorted({s.type for s in c.streams})) or "none"
                    raise Reject(f"no video stream (streams: {kinds}); audio-only or not a video")
                s = c.streams.video[0]
                fps = float(s.average_rate or s.guessed_rate or 0) or None
                duration = (
                    float(s.duration * s.time_base)
                    if s.duration
                    else (c.duration / av.time_base if c.duration else None)
                )
                frames = s.frames or (round(duration * fps) if duration and fps else None)
                info = {
                    "kind": "video",
                    "fps": fps,
                    "duration": duration,
                    "frame_count": frames,
                    "width": s.codec_context.width,
                    "height": s.codec_context.height,
                    "codec": s.codec_context.name,
                    "start": float(s.start_time * s.time_base) if s.start_time else 0.0,
                }
                first = next(
                    c.decode(video=0), None
                )  # proves the stream decodes; carries the display rotation
                if first is None:
                    raise Reject("video stream holds no decodable frame")
                info["rotation"] = int(round(getattr(first, "rotation", 0) or 0)) % 360
        except Reject:
            raise
        except (av.error.FFmpegError, UnicodeDecodeError, OSError) as e:
            raise Reject(f"not a readable video: {type(e).__name__}: {e}") from None
        if not fps:
            raise Reject("video stream has no frame rate")
        if not info["width"] or not info["height"]:
            raise Reject("video stream has no frame size")
        work.probe = info
        return work
