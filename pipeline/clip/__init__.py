"""CLIP stage (open_clip): relevance to the task, semantic dedup, progress order, CLIP score. See docs/CLIP.md.

Light to import: the stages themselves live in pipeline.clip.stages (torch, open_clip).
"""

from pipeline.clip.resolve import ClipPlan, ClipUnavailable, plan_clip

__all__ = ["ClipPlan", "ClipUnavailable", "plan_clip"]
