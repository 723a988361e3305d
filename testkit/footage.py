"""Tutorial footage as real tutorials are shot, with ground truth for every frame.

Each phenomenon of issue 10 can be switched on alone or combined: step-wise work (pieces placed one at a
time, a hand placing each), camera jitter, separate re-framed shots per step with a talking-head insert,
a view that zooms and pans over a painting, exposure and white-balance drift (slow, or swinging every few
seconds: ``flicker``), step stills joined by cross-fades, and a hand over the work. The world is the work
on a textured desk (a real texture photo), or filling the frame on a plain ground (``framing``); a camera
(zoom, offset, jitter) films it. ``grade`` checks a built sequence against the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

from pipeline.demo.synthetic import _canvas_at, _card, _hand, _order_map, _talking_head, write_video
from testkit.styles import make_style

PHENOMENA = (
    "stepwise_jitter",
    "multishot",
    "zoom_pan",
    "exposure_drift",
    "crossfade",
    "hand",
    "combined",
    "flicker",
)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
FRAMINGS = ("desk", "close")  # the work on a textured desk, or filling the frame on a plain ground


@dataclass
class FrameTruth:
    """What one video frame shows."""

    kind: str  # "card", "talk", "work" (the work, at some state), "blend" (a cross-fade between states)
    progress: float | None = None  # true completion of the work in [0, 1] when kind == "work"
    hand: bool = False  # a hand covers part of the work
    visible: float = 1.0  # fraction of the work inside the view


@dataclass
class Footage:
    fps: int
    frames: list[FrameTruth] = field(default_factory=list)
    states: int = 0  # distinct states of the work the video shows

    def finished(self, i: int) -> bool:
        f = self.frames[i]
        return f.kind == "work" and f.progress is not None and f.progress >= 1.0 - 1e-6


@dataclass
class Camera:
    """Similarity view of the world: zoom about the world centre, offset as a fraction of the frame."""

    zoom: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def matrix(self, world: tuple[int, int], frame: tuple[int, int]) -> np.ndarray:
        (ww, wh), (w, h) = world, frame
        s = self.zoom * w / (ww / 1.3)  # at zoom 1 the frame shows the central 1/1.3 of the world
        cx, cy = ww / 2 - self.dx * ww / 1.3, wh / 2 - self.dy * wh / 1.3
        return np.array([[s, 0, w / 2 - s * cx], [0, s, h / 2 - s * cy]], np.float32)


class World:
    """A textured desk with the work on it; renders the work at any state through any camera.

    ``style`` (testkit.styles) says how the work is made; None: the phenomenon's own (a board of square
    pieces for the step-wise phenomena, a region-by-region reveal for the others). ``pieces``: how many
    steps the step-wise phenomena film. ``framing``: ``desk``, the work in the middle of a textured desk
    (the desk gives registration plenty to hold on to); ``close``, the work filling the frame on a plain
    ground, as a camera over a board or a sheet is often set up: little but the work itself to register on,
    and a nearly untouched work shows next to nothing."""

    def __init__(
        self,
        photo: np.ndarray,
        frame: tuple[int, int],
        rng: np.random.Generator,
        pieces: int = 0,
        style: str | None = None,
        framing: str = "desk",
    ) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}; one of {FRAMINGS}")
        w, h = frame
        self.frame = frame
        self.size = (round(w * 1.3), round(h * 1.3))
        ww, wh = self.size
        if framing == "desk":
            tex = cv2.resize(
                getattr(skimage.data, ("brick", "gravel", "grass")[int(rng.integers(3))])(), (ww, wh)
            )
            tone = np.array([150, 115, 80], np.float32) * rng.uniform(0.8, 1.1)
            self.desk = np.clip(tone * (0.7 + 0.6 * tex[..., None] / 255.0), 0, 255).astype(np.uint8)
            ch = round(h * 0.6)
            cw = min(round(ch * photo.shape[1] / photo.shape[0]), round(w * 0.7))
        else:  # the work fills nine tenths of the view at zoom 1, on a ground of one colour
            tone = rng.uniform(40, 200, 3)
            self.desk = np.broadcast_to(tone.astype(np.uint8), (wh, ww, 3)).copy()
            ch, cw = round(h * 0.9), round(w * 0.9)
        self.art = cv2.resize(photo, (cw, ch), interpolation=cv2.INTER_AREA)
        self.box = ((ww - cw) // 2, (wh - ch) // 2, (ww - cw) // 2 + cw, (wh - ch) // 2 + ch)
        edges = cv2.Canny(cv2.cvtColor(self.art, cv2.COLOR_RGB2GRAY), 60, 140)
        self.sketch = np.full_like(self.art, 250)
        self.sketch[edges > 0] = (90, 90, 90)
        self.blocked = cv2.medianBlur(
            cv2.resize(cv2.resize(self.art, (cw // 12, ch // 12)), (cw, ch), interpolation=cv2.INTER_NEAREST),
            5,
        )
        self.order = _order_map(ch, cw, rng)
        self.pieces = pieces
        self.style = None
        if style is not None:
            self.style = make_style(style, self.art, rng)
        elif pieces:  # a base plate filled piece by piece (LEGO, mosaic, cake layers seen from above)
            cols = int(np.ceil(np.sqrt(pieces * cw / ch)))
            rows = int(np.ceil(pieces / cols))
            cells = [(r, c) for r in range(rows) for c in range(cols)][:pieces]
            rng.shuffle(cells)
            self.cells = [
                (c * cw // cols, r * ch // rows, (c + 1) * cw // cols, (r + 1) * ch // rows) for r, c in cells
            ]
            plate = np.full_like(self.art, 205)
            plate[4::8, 4::8] = 160  # studs
            self.plate = cv2.GaussianBlur(plate, (3, 3), 0)

    def work(self, a: float) -> np.ndarray:
        if self.style is not None:
            return self.style.at(a)
        if not self.pieces:
            return _canvas_at(self.art, self.sketch, self.blocked, self.order, a)
        out = self.plate.copy()
        for x0, y0, x1, y1 in self.cells[: int(round(a * self.pieces))]:
            out[y0:y1, x0:x1] = self.art[y0:y1, x0:x1]
        return out

    def piece_centre(self, k: int) -> tuple[float, float]:
        """Where the hand works while adding step k + 1 (world pixels)."""
        if self.style is not None:
            return self.front(k / self.pieces, (k + 1) / self.pieces, step=k)
        x0, y0, x1, y1 = self.cells[min(k, self.pieces - 1)]
        return self.box[0] + (x0 + x1) / 2, self.box[1] + (y0 + y1) / 2

    def front(self, a: float, b: float, step: int | None = None) -> tuple[float, float]:
        """Where the work changes from progress a to b (world pixels; the work's centre if nowhere): the
        middle of the change, or for ``step`` k one of its pixels chosen by k (a refinement pass changes
        the whole canvas, and a hand does not return to its middle at every step)."""
        ys, xs = np.nonzero(np.abs(self.work(min(b, 1.0)).astype(int) - self.work(a)).max(axis=-1) > 20)
        x0, y0, x1, y1 = self.box
        if not len(ys):
            return (x0 + x1) / 2, (y0 + y1) / 2
        if step is not None:
            j = int(np.random.default_rng(step).integers(len(ys)))
            return x0 + float(xs[j]), y0 + float(ys[j])
        return x0 + float(np.median(xs)), y0 + float(np.median(ys))

    def shoot(
        self, a: float, cam: Camera, hand_at: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, float]:
        """The frame, and the fraction of the work inside it."""
        world = self.desk.copy()
        x0, y0, x1, y1 = self.box
        world[y0:y1, x0:x1] = self.work(a)
        m = cam.matrix(self.size, self.frame)
        w, h = self.frame
        img = cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        corners = np.array([[x0, y0, 1], [x1, y1, 1]], np.float32) @ m.T
        vis_w = max(0.0, min(corners[1, 0], w) - max(corners[0, 0], 0))
        vis_h = max(0.0, min(corners[1, 1], h) - max(corners[0, 1], 0))
        visible = vis_w * vis_h / ((corners[1, 0] - corners[0, 0]) * (corners[1, 1] - corners[0, 1]))
        if hand_at is not None:
            hx, hy = np.array([*hand_at, 1.0], np.float32) @ m.T
            _hand(img, int(hx), int(hy), 1.2 * m[0, 0] * h / 360)
        return img, float(visible)


@dataclass
class Timeline:
    """Frames and their truth as they are appended; photometric drift applied last."""

    fps: int
    frames: list[np.ndarray] = field(default_factory=list)
    truth: Footage | None = None

    def __post_init__(self) -> None:
        self.truth = Footage(fps=self.fps)

    def add(self, img: np.ndarray, t: FrameTruth) -> None:
        self.frames.append(img)
        self.truth.frames.append(t)

    def seconds(self, s: float) -> int:
        return max(1, int(round(s * self.fps)))

    def card(self, text: str, seconds: float, size: tuple[int, int]) -> None:
        img = _card(size[1], size[0], text, (40, 40, 90))
        for _ in range(self.seconds(seconds)):
            self.add(img, FrameTruth("card"))

    def talk(self, seconds: float, size: tuple[int, int]) -> None:
        for i in range(self.seconds(seconds)):
            self.add(_talking_head(size[1], size[0], i / self.fps), FrameTruth("talk"))

    def fade_to(self, img: np.ndarray, seconds: float) -> None:
        """A cross-fade from the last frame to ``img``; the blended frames are marked."""
        a = self.frames[-1].astype(np.float32)
        n = self.seconds(seconds)
        for i in range(1, n + 1):
            w = i / (n + 1)
            self.add(((1 - w) * a + w * img).astype(np.uint8), FrameTruth("blend"))


def _jitter(rng: np.random.Generator, cam: Camera, px: float, size: tuple[int, int]) -> Camera:
    return Camera(cam.zoom, cam.dx + rng.normal(0, px / size[0]), cam.dy + rng.normal(0, px / size[1]))


def _gains(n: int, rng: np.random.Generator, amount: float, fast: bool = False) -> np.ndarray:
    """Per-frame RGB gains: exposure +-amount and a slower white-balance drift, as daylight changes; or,
    ``fast``, both swinging every few seconds and the white balance by twice as much (a camera's automatic
    exposure and white balance hunting as a hand comes and goes, a cloud, a lamp)."""
    t = np.linspace(0, 1, n)[:, None]
    if fast:
        expo = 1 + amount * np.sin(2 * np.pi * (t * rng.uniform(3.0, 6.0) + rng.uniform()))
        wb = 1 + 0.25 * np.sin(2 * np.pi * (t * rng.uniform(2.0, 4.0) + rng.uniform())) * np.array(
            [[1.0, 0.0, -1.0]]
        )
        return expo * wb
    expo = 1 + amount * np.sin(2 * np.pi * (t * rng.uniform(0.7, 1.3) + rng.uniform()))
    wb = 1 + 0.12 * np.sin(2 * np.pi * (t * 0.6 + rng.uniform())) * np.array([[1.0, 0.0, -1.0]])
    return expo * wb


def _stepwise(
    tl: Timeline,
    world: World,
    rng: np.random.Generator,
    cam_for_step: Callable[[int], Camera],
    jitter: float,
    hold: float,
    place: float,
    cut_every_step: bool,
    fades: bool,
) -> None:
    """Pieces placed one by one: a hand places piece k (visible for ``place`` s), then the state holds."""
    size = world.frame
    for k in range(world.pieces + 1):
        cam = cam_for_step(k)
        if k and cut_every_step and fades:  # the new shot fades in, showing the state before piece k
            tl.fade_to(world.shoot((k - 1) / world.pieces, cam)[0], 0.5)
        if k:
            for _ in range(tl.seconds(place)):
                c = _jitter(rng, cam, jitter, size)
                img, vis = world.shoot((k - 1) / world.pieces, c, hand_at=world.piece_centre(k - 1))
                tl.add(img, FrameTruth("work", (k - 1) / world.pieces, hand=True, visible=vis))
        for _ in range(tl.seconds(hold)):
            img, vis = world.shoot(k / world.pieces, _jitter(rng, cam, jitter, size))
            tl.add(img, FrameTruth("work", k / world.pieces, visible=vis))
        tl.truth.states = k + 1


def _painting(
    tl: Timeline,
    world: World,
    rng: np.random.Generator,
    seconds: float,
    hold: float,
    cam_at: Callable[[float], Camera],
    hand_bursts: int,
) -> None:
    """A continuous painting process, a hand passing over the work now and then, then the finished hold."""
    n, nh = tl.seconds(seconds), tl.seconds(hold)
    bursts = sorted(rng.uniform(0.1, 0.85, hand_bursts) * n)
    hand_len = tl.seconds(1.0)
    for i in range(n + nh):
        a = min(i / (n - 1), 1.0)
        hand = any(b <= i < b + hand_len for b in bursts) and i < n
        at = None
        if hand and world.style is not None:
            at = world.front(a, a + 0.04)
        elif hand:
            ys, xs = np.nonzero(np.abs(world.order - a) < 0.02)
            j = len(ys) // 2
            at = (world.box[0] + xs[j], world.box[1] + ys[j]) if len(ys) else None
        img, vis = world.shoot(a, cam_at(i / (n + nh)), hand_at=at)
        tl.add(img, FrameTruth("work", a, hand=at is not None, visible=vis))
    tl.truth.states = n


def render(
    phenomenon: str,
    photo: np.ndarray,
    seed: int = 0,
    size: tuple[int, int] = (384, 216),
    fps: int = 12,
    style: str | None = None,
    framing: str = "desk",
) -> tuple[Iterator[np.ndarray], Footage]:
    """All frames of one video of the phenomenon, and its truth. ``style``: how the work is made (one of
    testkit.styles.STYLES; None: the phenomenon's own, as before styles existed); ``framing``: one of
    FRAMINGS (World)."""
    rng = np.random.default_rng(seed)
    tl = Timeline(fps)
    tl.card("How it is made", 1.0, size)
    drift = 0.0
    if phenomenon == "stepwise_jitter":
        world = World(photo, size, rng, pieces=12, style=style, framing=framing)
        tl.talk(1.5, size)
        _stepwise(
            tl,
            world,
            rng,
            lambda k: Camera(),
            jitter=1.5,
            hold=1.2,
            place=0.5,
            cut_every_step=False,
            fades=False,
        )
    elif phenomenon in ("multishot", "combined"):
        world = World(photo, size, rng, pieces=11, style=style, framing=framing)
        cams = [
            Camera(rng.uniform(1.0, 1.35), rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05))
            for _ in range(world.pieces + 1)
        ]
        combined = phenomenon == "combined"
        half = world.pieces // 2

        def cam_for_step(k: int) -> Camera:
            if k == half + 1:  # a talking-head insert halfway, between two work shots
                tl.talk(2.0, size)
            return cams[k]

        drift = 0.3 if combined else 0.0
        _stepwise(
            tl,
            world,
            rng,
            cam_for_step,
            jitter=1.5 if combined else 0.0,
            hold=1.0,
            place=0.6,
            cut_every_step=True,
            fades=combined,
        )
    elif phenomenon == "zoom_pan":
        world = World(photo, size, rng, style=style, framing=framing)
        phase = rng.uniform(0, 2 * np.pi)

        def cam_at(u: float) -> Camera:
            return Camera(
                1.0 + 0.25 * (1 - np.cos(2 * np.pi * 1.5 * u + phase)),
                0.05 * np.sin(2 * np.pi * u + phase),
                0.04 * np.sin(2 * np.pi * 0.7 * u),
            )

        _painting(tl, world, rng, 16.0, 2.0, cam_at, hand_bursts=2)
    elif phenomenon in ("exposure_drift", "hand", "flicker"):
        world = World(photo, size, rng, style=style, framing=framing)
        drift = 0.0 if phenomenon == "hand" else 0.3
        _painting(tl, world, rng, 16.0, 2.0, lambda u: Camera(), hand_bursts=2 if drift else 4)
    elif phenomenon == "crossfade":
        world = World(photo, size, rng, style=style, framing=framing)
        for k in range(10):
            img, vis = world.shoot(k / 9, Camera())
            if k:
                tl.fade_to(img, 0.5)
            for _ in range(tl.seconds(1.5)):
                tl.add(img, FrameTruth("work", k / 9, visible=vis))
        tl.truth.states = 10
    else:
        raise ValueError(f"unknown phenomenon {phenomenon!r}; one of {PHENOMENA}")
    tl.card("Thanks for watching!", 1.0, size)
    gains = _gains(len(tl.frames), rng, drift, fast=phenomenon == "flicker") if drift else None

    def frames() -> Iterator[np.ndarray]:
        for i, img in enumerate(tl.frames):
            f = img.astype(np.float32)
            if gains is not None and tl.truth.frames[i].kind != "card":
                f *= gains[i]
            f += rng.integers(-2, 3, (size[1], size[0], 1))
            yield np.clip(f, 0, 255).astype(np.uint8)

    return frames(), tl.truth


def make_footage(
    path: str | Path,
    phenomenon: str,
    photo: str = "astronaut",
    seed: int = 0,
    size: tuple[int, int] = (384, 216),
    fps: int = 12,
    style: str | None = None,
    framing: str = "desk",
) -> Footage:
    frames, truth = render(phenomenon, getattr(skimage.data, photo)(), seed, size, fps, style, framing)
    write_video(path, frames, fps, size)
    return truth


def reencode(src: str | Path, dst: str | Path, crf: int) -> None:
    """The video at ``src`` decoded and encoded again by libx264 at ``crf`` (a second generation, as a
    re-upload or an editor's export makes one)."""
    with av.open(str(src)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps = int(round(c.streams.video[0].average_rate))
    write_video(dst, frames, fps, (frames[0].shape[1], frames[0].shape[0]), crf=crf)


def grade(frames: list[dict], truth: Footage, first_max: float = 0.35) -> list[str]:
    """Why a built sequence is not good (empty: good): every step shows the work, unblended and free of
    the hand, true progress strictly rising, the first an early stage, the last the finished work."""
    idx = [f["source_frame"] for f in frames]
    problems = []
    for i in idx:
        t = truth.frames[min(i, len(truth.frames) - 1)]
        if t.kind != "work":
            problems.append(f"frame {i} is a {t.kind} frame, not the work")
        elif t.hand:
            problems.append(f"frame {i}: a hand covers the work")
    prog = [truth.frames[min(i, len(truth.frames) - 1)].progress for i in idx]
    if all(p is not None for p in prog):
        if any(b <= a for a, b in zip(prog, prog[1:])):
            problems.append(f"progress does not rise strictly: {[round(p, 3) for p in prog]}")
        if prog[0] > first_max:
            problems.append(f"first step is not early ({prog[0]:.2f})")
        if not truth.finished(idx[-1]):
            problems.append(f"last step is not the finished work ({prog[-1]:.2f})")
    return problems
