"""Training configuration: pydantic models read from YAML, so a typo or bad value fails before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.config import ConfigError, explain, read_yaml_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where samples come from and how they are batched."""

    shards: list[str] = Field(
        default_factory=list,
        description="build folders, tar paths, globs, brace patterns, https:// or s3:// URLs",
    )
    val_shards: list[str] = Field(default_factory=list, description="held-out shards for the validation loss")
    val_samples: int = Field(default=4, ge=1, description="held-out samples used for the validation loss")
    batch_size: int = Field(default=1, ge=1)
    workers: int = Field(default=0, ge=0, description="DataLoader worker processes per rank")
    shuffle_buffer: int = Field(default=64, ge=1)
    resampled: bool = Field(
        default=False,
        description="draw shards with replacement (endless, rank-seeded) "
        "instead of splitting them between ranks and workers",
    )
    cell: int | None = Field(
        default=None, ge=2, description="resize every cell to this side (px); default: the layout's own cell"
    )
    taxonomy: str | None = Field(default=None, description="tasks YAML (default: the bundled one)")
    head_map: dict[str, int] = Field(
        default_factory=dict,
        description="released-format samples: substring of the caption, key or shard "
        "URL -> task head, used when the caption has no --lora_up_cur tag",
    )
    text_cache: str | None = Field(
        default=None,
        description="folder caching text embeddings by sample key; "
        "filled before training, then the text encoders "
        "stay off the GPU",
    )
    latent_cache: str | None = Field(
        default=None,
        description="folder caching the VAE latents of the grids by "
        "sample key and content; filled before training, "
        "then the VAE stays off the GPU",
    )
    follow: bool = Field(
        default=True,
        description="a corpus in data.shards is read as one snapshot, pinned at the start; true: each "
        "epoch after the first moves to the corpus's newest snapshot; false: the whole run stays on the "
        "pinned one (as long as the corpus's retention keeps its files)",
    )
    max_missing: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of a snapshot's shards that may vanish (vacuumed too early, deleted "
        "remotely) before the run stops; each vanished shard is skipped with a warning and counted",
    )
    caption: Literal["rich", "template"] = Field(
        default="rich",
        description="rich: KEY.txt, the VLM's hierarchical caption where the sample has one; "
        "template: the taxonomy's one-line caption (caption.template in the json)",
    )


class LoraConfig(_Strict):
    """Asymmetric LoRA: one shared A, one B per task head."""

    rank: int = Field(default=64, ge=1)
    alpha: float = Field(default=1.0, gt=0)
    targets: Literal["all", "fused", "attention"] | list[str] = Field(
        default="all",
        description="'all' Linear layers in the double and single blocks, 'fused' the same with "
        "one A per BFL Linear (q/k/v share it, as in the authors' checkpoints), "
        "'attention' q/k/v/out only, or a list of module-name suffixes",
    )
    heads: int | None = Field(
        default=None, ge=1, description="number of B heads (default: the taxonomy's largest head)"
    )
    freeze_a: bool = False
    init: str | None = Field(
        default=None,
        description="start from a LoRA file: the authors' asymmetric "
        "checkpoint (any number of heads, appended heads start "
        "at zero) or a plain kohya Flux LoRA (head 1)",
    )
    offload_heads: bool | Literal["auto"] = Field(
        default="auto",
        description="keep B heads and their optimiser state in pinned CPU memory, only the "
        "batch's heads on the GPU (auto: on a GPU when all heads with AdamW state "
        "would take over 20% of its memory; never with several processes)",
    )


class TinyModel(_Strict):
    """Shape of the random model used by tests and the CPU demo."""

    num_layers: int = 1
    num_single_layers: int = 1
    attention_head_dim: int = 16
    num_attention_heads: int = 2
    joint_attention_dim: int = 32
    pooled_projection_dim: int = 32
    axes_dims_rope: tuple[int, int, int] = (4, 4, 8)
    text_length: int = Field(default=16, description="fixed T5 length (Flux-dev: 512)")
    seed: int = 0


class ModelConfig(_Strict):
    """Which Flux to adapt."""

    model: str = Field(
        default="tiny",
        description="'tiny' (random, for tests and the demo), 'recraft' (the base "
        "of the `recraft.base_lora` run with that LoRA merged in), a "
        "local diffusers folder, or a hub id",
    )
    tiny: TinyModel = Field(default_factory=TinyModel)
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        default=None, description="base weight dtype (default: bfloat16 on GPU, float32 on CPU)"
    )
    text_length: int = Field(default=512, ge=1, le=512, description="T5 length for real Flux")
    base_dtype: Literal["bf16", "fp8"] = Field(
        default="bf16",
        description="frozen block Linear weights: 'bf16' (in model.dtype) or 'fp8' (float8 e4m3 "
        "with a scale per row: half the memory)",
    )
    fp8_matmul: Literal["auto", "native", "upcast"] = Field(
        default="auto",
        description="fp8 base: 'native' fp8 x fp8 matmuls (Ada/Hopper), 'upcast' the weight per "
        "layer, 'auto' native on CUDA GPUs of compute capability 8.9+ that pass a probe",
    )


class SampleConfig(_Strict):
    """Sample grids written during training."""

    every: int = Field(default=0, ge=0, description="steps between sample grids (0: never)")
    prompts: dict[str, str] = Field(default_factory=dict, description="task id -> prompt")
    steps: int = Field(default=20, ge=1)
    guidance: float = 1.0
    seed: int = 0


class TrainConfig(_Strict):
    """Optimisation and bookkeeping."""

    steps: int = Field(default=1000, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = Field(default=0, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    grad_accum: int = Field(default=1, ge=1)
    clip: float | None = Field(default=1.0, gt=0)
    seed: int = 0
    guidance: float = Field(
        default=1.0, description="guidance-embedding value during training (authors: 1.0)"
    )
    logit_mean: float = 0.0
    logit_std: float = Field(default=1.0, gt=0)
    shift: float | Literal["auto"] = Field(
        default="auto",
        description="timestep shift s; 'auto': e^mu, mu linear in image tokens (0.5@256, 1.15@4096)",
    )
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch threads when training on the CPU (tiny models run fastest on 1)",
    )
    log_every: int = Field(default=10, ge=1)
    ckpt_every: int = Field(default=500, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    val_every: int = Field(default=0, ge=0, description="steps between validation losses (0: never)")
    val_timesteps: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75])

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if any(not 0 < t < 1 for t in self.val_timesteps):
            raise ValueError(f"val_timesteps must lie in (0, 1), got {self.val_timesteps}")
        return self


class RecraftConfig(_Strict):
    """Image-to-sequence training on top of one task's merged asymmetric LoRA."""

    base_lora: str = Field(description="run directory or exported LoRA file whose task LoRA is merged in")
    task: str = Field(description="task id whose head is merged and whose layout is used")
    mode: Literal["final", "interpolate"] = Field(
        default="final",
        description="condition on the final frame, or on the first and final frames "
        "(frame interpolation: the model fills in the steps between)",
    )


class Config(_Strict):
    """A whole training run."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    recraft: RecraftConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, raw: object) -> object:
        """Allow `model: tiny` as well as a full `model:` mapping."""
        if isinstance(raw, dict) and isinstance(raw.get("model"), str):
            raw = {**raw, "model": {"model": raw["model"]}}
        return raw

    @model_validator(mode="after")
    def _recraft_needs_section(self) -> Config:
        if (self.model.model == "recraft") != (self.recraft is not None):
            raise ValueError("`model: recraft` and a `recraft:` section go together")
        return self

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """ConfigError naming the file, every bad key path as typed, and the closest known key."""
        try:
            return cls.model_validate(read_yaml_mapping(path))
        except ValidationError as e:
            raise ConfigError("\n".join(explain(e, str(path), cls))) from None

    def dump(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
