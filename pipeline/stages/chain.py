"""The stage order. The CLIP stages (pipeline.clip) plug in after quality and after caption."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import BuildConfig
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


def build_stages(config: BuildConfig, clip: ClipSpec | None = None) -> list[Stage]:
    """Stages for one source, in order. ``clip``: pipeline.clip.plan_clip(config.clip).spec, None = no CLIP."""
    before_select: list[Stage] = [Probe(), Decode(config.analysis), Segment(config.segment),
                                  FindProcess(config.process), Quality(config.quality)]
    after_caption: list[Stage] = []
    if clip is not None:
        from pipeline.clip.stages import ClipFilter, ClipScore  # torch + open_clip only when CLIP runs
        before_select.append(ClipFilter(clip, config.clip))
        after_caption.append(ClipScore(clip, config.clip))
    return before_select + [Select(config.select), Tile(), Caption()] + after_caption
