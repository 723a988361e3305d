"""The item that flows through the stages: one source and everything the stages learned about it."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from pipeline.taxonomy import Task

# Reasons of sources that are not there (kinds, see reason_kind): one policy for all of them (README: a
# missing source is rejected with this reason and listed on the terminal, the run goes on; --strict: exit 4)
MISSING_KINDS = ("file not found", "folder not found", "folder holds no images", "no files match")


def reason_kind(reason: str) -> str:
    """A reason without its particulars (the text before the first ':', numbers as N), so reports can count
    'no making process found in 7 shot(s)' and '... in 2 shot(s)' as one kind."""
    return re.sub(r"\d+(\.\d+)?", "N", reason.split(":")[0]).strip()


def is_missing(reason: str) -> bool:
    return reason_kind(reason) in MISSING_KINDS


class Reject(Exception):
    """A stage decided this source yields nothing (bad file, no making process...). Not a crash."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RemoteInfo:
    """What a server says about a remote object without reading it (pipeline.intake.remote)."""

    size: int | None
    signature: str  # '' when the server offers nothing to compare (then the content is hashed each run)


@dataclass(frozen=True)
class Source:
    """One resolved manifest source. ``path`` is local (URLs are fetched into the scratch cache just
    before the stages run and removed after)."""

    uri: str
    path: str
    task: Task
    kind: Literal["video", "images", "svg", "strokes"]
    entry: int = 0  # manifest entry index, for error messages
    subject: str | None = None
    id: str | None = None
    images: tuple[str, ...] = ()  # ordered file list for kind == "images"
    ordered: bool = True  # False: file order means nothing; the CLIP stage orders the frames by progress
    license: str | None = None  # as the manifest gives them; copied into every sample and the dataset card
    attribution: str | None = None
    remote: RemoteInfo | None = None  # a remote object's size and signature, from its listing or HEAD
    data: bytes = b""  # svg: the item's bytes when it is an archive member (read once, on the driver)
    span: tuple[int, int] | None = None  # strokes: the item's [start, end) bytes in the ndjson file
    problem: str = ""  # why it cannot be read (an svg archive's truncated rest, a folder with no images...)
    svg_skip: tuple[str, ...] = ()  # svg: the entry's `skip:` selectors (annotations never drawn)
    svg_order: Literal["paint", "outline-first"] = "paint"  # svg: the entry's `order:` of revealing
    # A remote source's URL with the credentials that ``uri`` shows redacted (pipeline.io.redact): read
    # from, never written nor shown; '' when the URL holds none.
    secret_url: str = field(default="", repr=False)

    @property
    def read_url(self) -> str:
        """The URL to read a remote source from (credentials included)."""
        return self.secret_url or self.uri


_EYE = np.eye(3)
_CLOSE = 1e-8 + 1e-5 * np.abs(_EYE)  # np.allclose's atol + rtol * |identity|


@dataclass
class Frame:
    """A decoded frame at analysis resolution (RGB uint8), with the value every filter computed for it."""

    source_frame: int  # decoded-frame index in the video, or the image's position in the folder's file list
    time: float | None
    image: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = None  # unit-length CLIP image embedding, when the CLIP stage ran
    file: str | None = None  # the image's file name (image folders)
    warp: np.ndarray | None = None  # 3x3: this frame's pixels -> its group's reference view (None: identity)
    view: np.ndarray | None = (
        None  # small float RGB in the reference view, photometrically normalised, NaN off view
    )
    gain: np.ndarray | None = (
        None  # RGB gains that bring the frame to its group's photometry (None: as filmed)
    )
    parts: np.ndarray | None = (
        None  # progress per scale and edges (pipeline.footage.progress), share of each's whole change
    )

    @property
    def moved(self) -> bool:
        """Whether the frame must be warped to its group's reference view (the camera moved or re-framed):
        np.allclose(warp, identity) by its own formula, twenty times cheaper than the call (asked per frame
        by several stages)."""
        return self.warp is not None and not bool((np.abs(self.warp - _EYE) <= _CLOSE).all())


@dataclass
class Group:
    """Shots that show one piece of work (linked by registration), with the view they are aligned to."""

    shots: list[tuple[int, int]]  # [start, end) into Work.frames, time order
    reference: int  # index of the frame whose view the group is aligned to

    def indices(self) -> list[int]:
        return [i for a, b in self.shots for i in range(a, b)]


@dataclass
class Segment:
    """Where one piece of work accumulates toward its finished state (possibly across several shots)."""

    frames: list[Frame]
    scores: dict[str, float] = field(default_factory=dict)
    region: np.ndarray | None = None  # work region in the views' coordinates (pixels that change)
    size: tuple[int, int] | None = None  # (w, h) of the reference view the frames are warped into


@dataclass
class Sequence:
    """N selected frames in step order, tiled and captioned."""

    frames: list[Frame]
    segment_scores: dict[str, float]
    size: tuple[int, int] | None = None  # (w, h) of the reference view the frames are warped into
    grid: Image.Image | None = None
    caption: str = ""
    scores: dict = field(default_factory=dict)


@dataclass
class Work:
    source: Source
    probe: dict = field(default_factory=dict)
    sha256: str = ""
    frames: list[Frame] = field(default_factory=list)  # analysis frames, time order
    shots: list[tuple[int, int]] = field(default_factory=list)  # [start, end) into frames
    groups: list[Group] = field(default_factory=list)  # shots linked into one work each
    fades: dict[int, float] = field(default_factory=dict)  # frame -> cross-fade score as filmed (cache)
    fade_parts: dict = field(default_factory=dict)  # small frames and scores behind them (cache)
    segments: list[Segment] = field(default_factory=list)
    sequences: list[Sequence] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)  # frame drops by reason
    notes: list[str] = field(default_factory=list)
    gates: list[dict] = field(default_factory=list)  # tests measured per group: where, stage, gates
