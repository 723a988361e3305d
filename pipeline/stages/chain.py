"""The stage order. The CLIP stages (pipeline.clip) plug in after quality and after caption."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import BuildConfig
from pipeline.stages.align import Align
from pipeline.stages.base import Stage
from pipeline.stages.compose import Caption, Tile
from pipeline.stages.decode import Decode
from pipeline.stages.probe import Probe
from pipeline.stages.process import FindProcess
from pipeline.stages.quality import Quality
from pipeline.stages.segment import Segment
from pipeline.stages.select import Select

if TYPE_CHECKING:
    from pipeline.clip.model import ClipSpec


DRAWINGS = ("svg", "strokes")


def build_stages(
    config: BuildConfig, clip: ClipSpec | None = None, kind: str = "video", decode_threads: int | None = None
) -> list[Stage]:
    """Stages for one source of ``kind``, in order. ``clip``: pipeline.clip.plan_clip(config.clip).spec, None = no CLIP.
    ``decode_threads``: the video decoder's threads (default ``cluster.decode_threads``).

    Footage (videos, step-image folders) is probed, decoded, segmented, aligned and filtered before the
    steps are selected; drawings (svg, strokes) are rendered element by element straight into their steps.
    """
    clip_filter: list[Stage] = []
    after_caption: list[Stage] = []
    if clip is not None:
        from pipeline.clip.stages import ClipFilter, ClipScore  # torch + open_clip only when CLIP runs

        clip_filter.append(ClipFilter(clip, config.clip))
        after_caption.append(ClipScore(clip, config.clip))
    tol = config.process.pixel_tolerance
    if kind in DRAWINGS:  # every step is drawn on purpose: nothing to find, filter or select
        from pipeline.stages.draw import DrawProgressively  # the renderer: ~35 ms of start-up, drawings only

        front: list[Stage] = [DrawProgressively(config.vector)]
    else:
        front = [
            Probe(),
            Decode(config.analysis, decode_threads or config.cluster.decode_threads),
            Segment(config.segment),
            Align(config.align, tol),
            FindProcess(config.process, config.progress),
            Quality(config.quality, tol, config.progress.noise),
            *clip_filter,
            Select(config.select, config.progress, tol),
        ]
    return front + [Tile(), Caption()] + after_caption
