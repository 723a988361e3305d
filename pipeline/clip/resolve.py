"""Before any work starts: find the configured CLIP weights on this machine, or say plainly why not.

Workers never download: the plan hands them a local file or folder, checked by loading it once here.
Importing this module is cheap (no torch). The files are looked for first (pipeline.clip.locate, no torch):
torch and open_clip are imported only to load weights that exist, so a machine without them learns it
in milliseconds instead of the seconds an import of torch takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pipeline.config import ClipConfig

if TYPE_CHECKING:
    from pipeline.clip.spec import ClipSpec


class ClipUnavailable(Exception):
    """The CLIP stage is required (clip.require / --require-clip) but cannot run; the CLI exits 2."""


class _Skip(Exception):
    """Why the stage cannot run, in words for the run report."""


@dataclass(frozen=True)
class ClipPlan:
    """`spec` to hand to the stages, or None; `message` is the run report's line either way."""

    spec: ClipSpec | None
    message: str

    @property
    def ready(self) -> bool:
        return self.spec is not None

    @property
    def notice(self) -> str:
        """The terminal's one line (the report keeps ``message`` whole): why it is off, not how to fix it."""
        if self.ready:
            return self.message
        why = re.split(r";\s|\.\s", self.message.removeprefix("CLIP stage skipped: "), maxsplit=1)[0]
        return (
            f"CLIP stage skipped ({why}): pixel-based selection; how to add weights: report.md, docs/CLIP.md"
        )


def _ready_spec(cfg: ClipConfig) -> ClipSpec:
    """Locate the weights and load them once on the CPU; any failure raises with the reason."""
    if not cfg.enabled:
        raise _Skip("it is turned off (clip.enabled: false).")
    from pipeline.clip.locate import WeightsNotFound, locate

    try:
        spec = locate(cfg)
        from pipeline.clip.model import ClipModel
    except ImportError as e:
        raise _Skip(
            f"open_clip_torch / torch are not installed ({e}); "
            "install them with pip install 'makeanything[ml]'."
        ) from e
    except WeightsNotFound as e:
        raise _Skip(str(e)) from e
    try:
        ClipModel(replace(spec, device="cpu"))
    except Exception as e:  # a corrupt or mismatched checkpoint must stop here, not in every task
        raise _Skip(f"{spec.describe()} could not be loaded: {type(e).__name__}: {e}") from e
    return spec


def plan_clip(cfg: ClipConfig) -> ClipPlan:
    """A ready spec, or a 'skipped because ...' plan; raises ClipUnavailable instead when cfg.require."""
    try:
        spec = _ready_spec(cfg)
    except _Skip as e:
        if cfg.require:
            raise ClipUnavailable(
                f"CLIP stage required (clip.require / --require-clip) but cannot run: {e}"
            ) from None
        return ClipPlan(None, f"CLIP stage skipped: {e} The build continues with pixel-based selection.")
    return ClipPlan(spec, f"CLIP stage on: {spec.describe()}, device {cfg.device}, batch {cfg.batch_size}")
