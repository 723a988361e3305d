"""Evaluation settings in one validated place, so a run's report can state exactly what it used."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import ConfigError, explain, read_yaml_mapping


class ClipConfig(BaseModel):
    """Which open_clip model scores text against images (and embeds frames for the `clip` backbone)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    model: str = "ViT-L-14"
    pretrained: str = Field(default="openai", description="open_clip tag or path of a local checkpoint")
    model_config_path: Path | None = Field(
        default=None, description="JSON model config to register with open_clip (custom architectures)"
    )
    device: str | None = Field(default=None, description="torch device; default cuda when present, else cpu")
    batch_size: int = Field(default=16, ge=1)


class MetricConfig(BaseModel):
    """Coherence / progress settings; thresholds are per backbone because distances differ in scale."""

    model_config = ConfigDict(extra="forbid")

    backbone: Literal["clip", "pixel"] = "clip"
    duplicate_distance: float | None = Field(
        default=None,
        ge=0,
        description="adjacent distance at or below which frames are duplicates (default: the backbone's own)",
    )
    jump_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="an adjacent step carrying more than this share of the sequence's total change is a jump",
    )
    pixel_side: int = Field(default=64, ge=8, description="frames are compared at this size (pixel backbone)")


class JudgeConfig(BaseModel):
    """An OpenAI-compatible chat-completions endpoint used as a VLM judge."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="base URL, e.g. https://api.openai.com/v1")
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    prompts: str = Field(default="judge-v1", description="versioned prompt file in evaluation/prompts/")
    cache_dir: Path | None = Field(default=None, description="default: OUT/judge-cache")
    replay_only: bool = Field(
        default=False, description="answer from the cache only; never call the endpoint"
    )
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=2.0, ge=0)
    max_tokens: int = Field(default=300, ge=16)
    budget: int | None = Field(
        default=None,
        ge=0,
        description="stop asking after this many requests (retries count); the rest are errors",
    )
    compare: bool = Field(
        default=True, description="side-by-side ranking when several methods share a prompt"
    )

    @property
    def enabled(self) -> bool:
        return self.url is not None or self.replay_only


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap: int = Field(default=1000, ge=100)
    seed: int = 0
    max_strips: int = Field(default=24, ge=0, description="image strips drawn (prompts, in input order)")


class EvalConfig(BaseModel):
    """Everything `makeanything evaluate` needs besides the inputs and the output folder."""

    model_config = ConfigDict(extra="forbid")

    taxonomy: Path | None = None
    video_frames: int | None = Field(
        default=None, ge=2, description="frames sampled from a video (default: the task's count)"
    )
    clip: ClipConfig = ClipConfig()
    metrics: MetricConfig = MetricConfig()
    judge: JudgeConfig = JudgeConfig()
    report: ReportConfig = ReportConfig()

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict | None = None) -> EvalConfig:
        """A YAML file (optional) with command-line overrides merged on top, section by section."""
        raw = read_yaml_mapping(path) if path else {}
        for key, value in (overrides or {}).items():
            if isinstance(value, dict):
                raw[key] = {**(raw.get(key) or {}), **value}
            else:
                raw[key] = value
        try:
            return cls(**raw)
        except ValidationError as e:
            raise ConfigError("\n".join(explain(e, str(path or "command line"), cls))) from None
