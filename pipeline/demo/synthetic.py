"""Tutorial-like videos made from a real photo: intro card, talking head, a painting process with a hand
passing over the work, a finished hold, an outro. The demo and the tests use them; the generator also
returns the ground truth (which frames hold the process, the hand, the finished work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np


@dataclass
class Script:
    """Seconds per part of the video."""

    intro: float = 2.0
    talk: float = 3.0
    process: float = 16.0
    hold: float = 2.0
    outro: float = 2.0
    hand_bursts: int = 4  # how many times a hand passes over the work
    hand_seconds: float = 1.2


@dataclass
class Truth:
    fps: int
    frames: int
    process: tuple[int, int]  # [start, end) frame indices of the process (hold included)
    finished: tuple[int, int]  # [start, end) of the finished hold
    canvas: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the work in the frame, pixels
    hand: set[int] = field(default_factory=set)  # frames where the hand covers the work
    progress: dict[int, float] = field(default_factory=dict)  # process frame -> fraction painted


def _order_map(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Painting order over the canvas: a smooth random field tilted top-left to bottom-right, in [0, 1]."""
    noise = cv2.resize(rng.random((6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field_ = 0.6 * (xx / w + yy / h) / 2 + 0.4 * noise
    ranks = field_.ravel().argsort().argsort().reshape(h, w)
    return ranks.astype(np.float32) / (h * w - 1)


def _canvas_at(
    photo: np.ndarray, sketch: np.ndarray, blocked: np.ndarray, order: np.ndarray, a: float
) -> np.ndarray:
    """The work at progress a: pencil sketch first, then blocked-in colour, then full detail."""
    out = np.full_like(photo, 250)
    s = order < min(a / 0.25, 1.0)
    out[s] = sketch[s]
    c = order < np.clip((a - 0.25) / 0.45, 0, 1)
    out[c] = blocked[c]
    d = order < np.clip((a - 0.6) / 0.4, 0, 1)
    out[d] = photo[d]
    return out


def _card(h: int, w: int, text: str, color: tuple[int, int, int]) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = color
    scale = w / 700
    size = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, 2)[0]
    cv2.putText(
        img,
        text,
        ((w - size[0]) // 2, h // 2),
        cv2.FONT_HERSHEY_DUPLEX,
        scale,
        (255, 255, 255),
        2,
        cv2.LINE_AA,
    )
    return img


def _talking_head(h: int, w: int, t: float) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (70, 90, 120)
    cv2.rectangle(img, (0, int(h * 0.7)), (w, h), (60, 50, 40), -1)  # a desk
    cx, cy = int(w / 2 + 12 * np.sin(t * 1.7)), int(h * 0.45 + 4 * np.sin(t * 2.3))
    cv2.ellipse(img, (cx, h), (int(w * 0.18), int(h * 0.35)), 0, 180, 360, (40, 60, 140), -1)  # shoulders
    cv2.ellipse(img, (cx, cy), (int(w * 0.08), int(h * 0.17)), 0, 0, 360, (150, 180, 225), -1)  # face
    for dx in (-1, 1):
        cv2.circle(img, (cx + dx * int(w * 0.03), cy - int(h * 0.03)), max(2, w // 160), (30, 30, 30), -1)
    mouth = int(h * 0.01 + h * 0.02 * abs(np.sin(t * 9)))
    cv2.ellipse(img, (cx, cy + int(h * 0.08)), (int(w * 0.025), mouth), 0, 0, 360, (40, 40, 120), -1)
    return img[..., ::-1].copy()


def _hand(img: np.ndarray, x: int, y: int, scale: float) -> None:
    """A skin-toned hand holding a brush, with the arm reaching in from the bottom-right."""
    h, w = img.shape[:2]
    skin = (224, 172, 140)
    cv2.line(img, (x, y), (w + 40, h + 40), (200, 150, 120), int(36 * scale))  # arm
    cv2.ellipse(img, (x, y), (int(30 * scale), int(22 * scale)), 35, 0, 360, skin, -1)  # hand
    cv2.line(
        img, (x, y), (x - int(40 * scale), y - int(30 * scale)), (120, 70, 20), max(2, int(5 * scale))
    )  # brush


def tutorial_frames(
    photo: np.ndarray,
    size: tuple[int, int] = (640, 360),
    fps: int = 25,
    script: Script = Script(),
    seed: int = 0,
):
    """Yield RGB frames of the tutorial; the returned Truth is filled as frames are produced."""
    w, h = size
    rng = np.random.default_rng(seed)
    ch, cw = int(h * 0.8), int(h * 0.8 * photo.shape[1] / photo.shape[0])
    cw = min(cw, int(w * 0.8))
    art = cv2.resize(photo, (cw, ch), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(art, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 60, 140)
    sketch = np.full_like(art, 250)
    sketch[edges > 0] = (90, 90, 90)
    blocked = cv2.medianBlur(
        cv2.resize(cv2.resize(art, (cw // 12, ch // 12)), (cw, ch), interpolation=cv2.INTER_NEAREST), 5
    )
    order = _order_map(ch, cw, rng)
    desk = np.zeros((h, w, 3), np.uint8)
    desk[:] = (120, 95, 70)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    n = {k: int(round(getattr(script, k) * fps)) for k in ("intro", "talk", "process", "hold", "outro")}
    start = n["intro"] + n["talk"]
    truth = Truth(
        fps=fps,
        frames=sum(n.values()),
        process=(start, start + n["process"] + n["hold"]),
        finished=(start + n["process"], start + n["process"] + n["hold"]),
        canvas=(x0, y0, x0 + cw, y0 + ch),
    )
    bursts = sorted(rng.uniform(0.1, 0.85, script.hand_bursts) * n["process"])
    hand_len = int(script.hand_seconds * fps)
    title, outro = (
        _card(h, w, "How to paint it", (40, 40, 90)),
        _card(h, w, "Thanks for watching!", (20, 20, 20)),
    )

    def gen():
        for i in range(truth.frames):
            noise = rng.integers(-2, 3, (h, w, 1), dtype=np.int16)
            if i < n["intro"]:
                frame = title
            elif i < start:
                frame = _talking_head(h, w, i / fps)
            elif i < truth.process[1]:
                k = i - start
                a = min(k / max(n["process"] - 1, 1), 1.0)
                frame = desk.copy()
                frame[y0 : y0 + ch, x0 : x0 + cw] = _canvas_at(art, sketch, blocked, order, a)
                truth.progress[i] = a
                if any(b <= k < b + hand_len for b in bursts):
                    ys, xs = np.nonzero(np.abs(order - a) < 0.02)
                    j = len(ys) // 2
                    hx, hy = (x0 + xs[j], y0 + ys[j]) if len(ys) else (x0 + cw // 2, y0 + ch // 2)
                    _hand(frame, int(hx), int(hy), 1.4 * h / 360)
                    truth.hand.add(i)
            else:
                frame = outro
            yield np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    return gen(), truth


def write_video(
    path: str | Path,
    frames,
    fps: int,
    size: tuple[int, int],
    crf: int = 23,
    x264: dict[str, str] | None = None,
) -> None:
    """Encode RGB frames as H.264 in MP4 (written under a temporary name, renamed when complete); ``x264``:
    more libx264 options (profile, x264-params)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.options = {"crf": str(crf), "preset": "veryfast", **(x264 or {})}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    tmp.replace(path)


def make_tutorial(
    path: str | Path,
    photo: np.ndarray,
    size: tuple[int, int] = (640, 360),
    fps: int = 25,
    script: Script = Script(),
    seed: int = 0,
) -> Truth:
    frames, truth = tutorial_frames(photo, size, fps, script, seed)
    write_video(path, frames, fps, size)
    return truth
