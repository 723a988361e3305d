"""CLIP stage (open_clip): relevance to the task, semantic dedup, progress order, CLIP score. See docs/CLIP.md."""
from pipeline.clip.resolve import ClipPlan, ClipUnavailable, plan_clip
from pipeline.clip.stages import ClipFilter, ClipScore

__all__ = ["ClipFilter", "ClipPlan", "ClipScore", "ClipUnavailable", "plan_clip"]
