"""The stage order. The CLIP stages (pipeline.clip) plug in after quality and after caption."""
from __future__ import annotations

from pipeline.config import BuildConfig
from pipeline.stages.base import Stage
from pipeline.stages.compose import Caption, Tile
from pipeline.stages.decode import Decode
from pipeline.stages.probe import Probe
from pipeline.stages.process import FindProcess
from pipeline.stages.quality import Quality
from pipeline.stages.segment import Segment
from pipeline.stages.select import Select


def build_stages(config: BuildConfig, clip_ready: bool = False) -> list[Stage]:
    """Stages for one source, in order. ``clip_ready``: the CLIP model was found before the run."""
    before_select: list[Stage] = [Probe(), Decode(config.analysis), Segment(config.segment),
                                  FindProcess(config.process), Quality(config.quality)]
    after_caption: list[Stage] = []
    return before_select + [Select(config.select), Tile(), Caption()] + after_caption
