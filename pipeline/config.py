"""Build configuration: one typed model, read from YAML (`--config FILE`); every field has a sensible default."""

from __future__ import annotations

import difflib
import hashlib
import json
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, the key path as typed and the problem."""


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the keys at ``loc`` (through optional sections and lists), or None."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        found = None
        for t in (field.annotation, *typing.get_args(field.annotation)):
            for inner in (t, *typing.get_args(t)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found = inner
        if found is None:
            return None
        model = found
    return model


def _key_path(loc: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"


# keys a release removed, with what replaced them: an old config says where the setting went
MOVED = {"select.min_distinct": "progress.min_share (a share of the whole process's change)"}


def explain(err: ValidationError, where: str, model: type[BaseModel], prefix: tuple = ()) -> list[str]:
    """One line per problem, ``WHERE: key.path: what is wrong``, unknown keys first (a typo such as ``taks:``
    also makes ``task`` missing: the typo is the news) with the closest known key where one is close.
    ``prefix``: where ``model`` sits in the file (a manifest entry: ``("sources", 3)``)."""
    lines = []
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            holder = _model_at(model, loc[:-1])
            known = list(holder.model_fields) if holder else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            moved = MOVED.get(_key_path(loc))
            hint = (
                f" (removed: now {moved})"
                if moved
                else f" (did you mean {close[0]!r}?)"
                if close
                else f" (known: {', '.join(known)})"
                if known
                else ""
            )
            lines.append(f"{where}: {_key_path(prefix + loc)}: unknown key{hint}")
        else:
            lines.append(f"{where}: {_key_path(prefix + loc)}: {e['msg'].removeprefix('Value error, ')}")
    return lines


def read_yaml_mapping(path: str | Path) -> dict:
    """A config file's top-level mapping (empty file: {}); ConfigError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnalysisConfig(_Section):
    """How densely a video is sampled. Frames are kept at output-cell resolution, never full size."""

    max_side: int = Field(512, ge=64, description="analysis frames are downscaled to this long side")
    rate: float = Field(4.0, gt=0, description="analysis frames per second of video")
    max_frames: int = Field(480, ge=16, description="cap on analysis frames per video (bounds memory)")
    skip_nonref: bool = Field(
        True, description="do not decode non-reference (B) frames; they are never sampled"
    )


class SegmentConfig(_Section):
    """Shot detection with PySceneDetect's AdaptiveDetector on a downscaled stream."""

    width: int = Field(160, ge=32, description="frames are downscaled to this width for detection")
    adaptive_threshold: float = 3.0
    min_content_val: float = 15.0
    min_shot_seconds: float = Field(1.0, ge=0)


class AlignConfig(_Section):
    """Registration of frames and shots to the work they show (zoom, pan, jitter, re-framed cuts)."""

    enabled: bool = Field(
        True, description="register frames and link shots; off: each shot stands alone, camera assumed fixed"
    )
    link_back: int = Field(
        8, ge=1, description="a shot is linked to one of this many earlier shots that shows the same work"
    )


class ProcessConfig(_Section):
    """What counts as a making process: a shot that accumulates toward its final state."""

    min_seconds: float = Field(4.0, description="shorter shots cannot hold a process")
    min_gain: float = Field(0.2, description="completion must rise by at least this much (0..1)")
    min_monotonic: float = Field(0.7, description="Spearman rho of completion vs time, at least")
    min_spread: float = Field(
        0.25,
        ge=0,
        le=1,
        description="the work must be in progress (20-80% complete) for at "
        "least this share of the time before it is finished; a change all at once is no process",
    )
    max_step_change: float = Field(
        0.06, description="at most this fraction of the work may change per analysis step (after alignment)"
    )
    pixel_tolerance: float = Field(0.08, description="a pixel 'matches' the final state within this (0..1)")
    crop_to_work: bool = Field(True, description="crop frames to the part of the view where the work happens")
    crop_margin: float = Field(
        0.04, ge=0, description="margin around the work, as a fraction of the frame side"
    )


class ProgressConfig(_Section):
    """The continuous progress measure: how far along the way from the start to the final state each frame
    is, at several scales and in its edges (docs/FOOTAGE.md), and the tests that rest on it."""

    noise: float = Field(
        0.03,
        ge=0,
        lt=1,
        description="per-pixel change (0..1) that noise and compression "
        "explain: a pixel counts by how far beyond it its way from start to final goes, and in the "
        "aligned cross-fade test when it changes by more",
    )
    coarsest: int = Field(12, ge=2, description="the pyramid of views stops at this many pixels across")
    min_settled: float = Field(
        0.85,
        ge=0,
        le=1,
        description="the last frames must be at least this far along "
        "(median): work converges on its final state; live action and a drifting camera "
        "do not settle",
    )
    min_share: float = Field(
        0.04,
        ge=0,
        le=1,
        description="consecutive steps must differ by at least this share "
        "of the whole process's change, in the scale (or the edges) that changes most "
        "between them; frames closer than half of it are one state (a hold)",
    )


class QualityConfig(_Section):
    """Per-frame filters inside a process."""

    blur_ratio: float = Field(
        0.35,
        description="drop a frame less sharp than this x the median sharpness on each side of it (within "
        "quality.occlusion_window): a dip, not the work turning soft (a colour block-in) or a closer shot",
    )
    min_visible: float = Field(
        0.85, ge=0, le=1, description="drop a frame that shows less than this fraction of the work"
    )
    blend_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="drop a frame as a cross-fade when more than this share of "
        "what changes between its neighbours sits half-way between them",
    )
    occlusion_window: float = Field(4.0, description="seconds of the temporal median that hides transients")
    occlusion_max: float = Field(
        0.0015,
        description="drop a frame when more than this fraction of the shown work (crop box) is covered by "
        "something that leaves again (a hand)",
    )


class SelectConfig(_Section):
    """Ordering and choice of the N steps."""

    sequences_per_source: int = Field(1, ge=1, description="at most this many sequences from one source")
    min_progress_step: float = Field(
        0.005, ge=0, description="progress must rise by this much from step to step"
    )


class ClipConfig(_Section):
    """CLIP relevance, dedup, ordering and scoring (open_clip); see docs/CLIP.md.

    Off, with a stated reason in the run report, when no weights are found locally; ``require``
    turns that into a usage error (exit 2) before any work starts. Never falls back to random weights.
    """

    enabled: bool = True
    require: bool = Field(False, description="stop before any work when the model cannot be loaded")
    model: str = Field(
        "ViT-B-32",
        description="open_clip architecture name, or local-dir:FOLDER "
        "(open_clip_config.json + weights; `pretrained` is then ignored)",
    )
    pretrained: str = Field("laion2b_s34b_b79k", description="open_clip pretrained tag or a checkpoint file")
    download: bool = Field(
        False,
        description="fetch a tag's weights from the internet when not cached "
        "(off: an offline machine would wait ~1 min for the hub to time out)",
    )
    cache_dir: str | None = Field(
        None, description="open_clip download cache; default: the Hugging Face cache"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA (fp16) when the worker has a GPU"
    )
    batch_size: int = Field(64, ge=1, description="images per encode_image call")
    store_embeddings: bool = Field(
        False,
        description="write each step's embedding into the sample json "
        "(frames[i].clip_embedding), for dedup across the corpus later",
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Dask resources CLIP tasks "
        "ask for, e.g. {GPU: 1} with workers started `--resources GPU=1`",
    )
    negatives: tuple[str, ...] = Field(
        (
            "a title card with text on a plain background",
            "a person talking to the camera",
            "a blank screen",
            "close-up of hands only, no artwork visible",
            "a person holding up a finished product to show it off",
        ),
        description="prompts for footage that is not the making process",
    )
    relevance_margin: float = Field(
        0.0,
        description="drop a frame (or shot) whose best negative cosine "
        "exceeds its best positive cosine by more than this",
    )
    duplicate_similarity: float = Field(
        0.98, gt=0, le=1, description="frames at or above this cosine to a kept frame are semantic duplicates"
    )
    start_prompt: str = Field(
        "the first step of {process}, an almost empty surface",
        description="orients unordered sources: the start of the process",
    )
    finished_prompt: str = Field("a finished {process}", description="orients unordered sources: the end")


class VectorConfig(_Section):
    """SVG and stroke sources (``svg:`` / ``strokes:`` entries): how elements become steps, and input limits."""

    analysis_size: int = Field(
        160,
        ge=32,
        description="side (px) of the small renders that measure what each element adds to the picture",
    )
    max_prefixes: int = Field(
        96,
        ge=2,
        description="at most this many partial renders are measured per item; "
        "drawings with more elements are measured in even groups of elements",
    )
    pixel_tolerance: float = Field(
        0.1, gt=0, lt=1, description="a pixel changed when a channel moves by more than this (0..1)"
    )
    min_addition: float = Field(
        0.0005,
        ge=0,
        description="an element changing less than this fraction of the "
        "picture adds nothing visible (it joins the next step)",
    )
    min_progress_step: float = Field(
        0.01,
        ge=0,
        description="each step must complete at least this much more "
        "of the final picture than the one before",
    )
    stroke_width: float = Field(
        0.012, gt=0, lt=0.5, description="stroke data: line width as a fraction of the cell"
    )
    stroke_margin: float = Field(
        0.06,
        ge=0,
        lt=0.45,
        description="stroke data: white margin around the drawing, as a fraction of the cell",
    )
    max_bytes: int = Field(4 << 20, ge=1024, description="items larger than this are rejected unread")
    max_elements: int = Field(20000, ge=1, description="SVGs with more XML elements are rejected")
    max_size: float = Field(
        1e5, gt=0, description="a declared width or height above this (px) is rejected as giant"
    )
    max_seconds: float = Field(20.0, gt=0, description="an item still rendering after this long is rejected")
    skip: tuple[str, ...] = Field(
        ("#kvg:StrokeNumbers_*",),
        description="annotations never drawn, in every SVG: `#id` (glob), `.class` or an element name "
        "(a manifest entry's `skip:` adds to these); the default leaves out KanjiVG's stroke numbers",
    )
    ground_coverage: float = Field(
        0.995,
        gt=0,
        le=1,
        description="a first element covering at least this share of the drawing's canvas is its "
        "ground: shown in every step, never a step of its own (a rounded square, like Twemoji's "
        "symbol buttons at 0.99, is part of the drawing)",
    )
    split_pieces: int = Field(
        3,
        ge=1,
        description="partial strokes: a drawing with too few visible additions for N steps has its "
        "stroked lines drawn along their length in about this many pieces per step in all",
    )
    outline_band: float = Field(
        0.02,
        gt=0,
        lt=0.5,
        description="traced shapes: a drawing still short of N steps has its filled shapes (plain colours) "
        "outlined before they are filled, a band this share of the drawing's longer side wide inside each "
        "shape's edge, in its own colour",
    )


class CaptionConfig(_Section):
    """Hierarchical captions from a vision-language model over an OpenAI-compatible chat-completions API
    (OpenAI, vLLM, Ollama, llama.cpp server, LM Studio); see docs/CAPTION.md. Off until ``url`` is set.

    Not part of the config hash: captions are tracked per sample (model and prompt hash in the json), so
    turning them on never forces a rebuild; `makeanything caption` adds them to an existing corpus.
    """

    url: str | None = Field(
        None, description="API base URL, e.g. https://api.openai.com/v1 or http://localhost:8000/v1"
    )
    model: str = Field("gpt-4o", description="model name the server knows, e.g. Qwen/Qwen2-VL-7B-Instruct")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="environment variable holding the API key "
        "(the key itself never goes into a config, report, log or shard)",
    )
    prompt: str | None = Field(
        None,
        description="instruction for every task, replacing the taxonomy's "
        "caption_prompt; fields {process} {name} {frames} {subject} {subject_line}",
    )
    images: Literal["frames", "grid"] = Field(
        "frames",
        description="send the step frames as N images, or the "
        "grid as one image with its reading order stated",
    )
    image_side: int = Field(512, ge=64, description="images are downscaled to this long side before sending")
    response_format: Literal["json_object", "json_schema", "none"] = Field(
        "json_object",
        description="structured output: json_object (widely served), json_schema (OpenAI, vLLM), "
        "none (the prompt alone asks for JSON)",
    )
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    timeout_s: float = Field(60.0, gt=0, description="seconds one request may take")
    retries: int = Field(
        4, ge=0, description="retries of a request after 429, 5xx, a timeout or a lost connection"
    )
    backoff_s: float = Field(
        1.0,
        ge=0,
        description="first retry delay, doubled each time (429 with Retry-After: the server's delay)",
    )
    max_tokens: int = Field(800, ge=16)
    budget: int | None = Field(
        None,
        ge=0,
        description="stop asking after this many requests (--caption-budget); "
        "the rest keep their template caption",
    )
    cache_dir: str | None = Field(
        None,
        description="answers cached by (frames, model, prompt); default "
        "OUT/caption-cache for local outputs, ~/.cache/makeanything/captions otherwise",
    )

    @property
    def enabled(self) -> bool:
        return self.url is not None


class ShardConfig(_Section):
    """Shard sizing for training: ranks x dataloader workers each need shards to read."""

    samples_per_shard: int = Field(
        100, ge=1, description="target samples per shard (one source never spans two)"
    )
    min_shards: int = Field(
        1,
        ge=1,
        description="while the dataset has fewer train shards than this, a run "
        "fills the missing number side by side (set to ranks x dataloader workers)",
    )
    val_fraction: float = Field(
        0.05, ge=0, le=1, description="fraction of sources (not samples) in the val split"
    )
    jpeg_quality: int = Field(95, ge=50, le=100)


class ClusterConfig(_Section):
    """Where the work runs; not part of the config hash (it does not change the output)."""

    workers: int = Field(2, ge=1)
    scheduler: str | None = Field(None, description="address of an existing Dask scheduler")
    in_flight_per_worker: int = Field(2, ge=1, description="bounds memory: sources submitted ahead")
    processes: bool | None = Field(
        None,
        description="local workers as processes (False: threads in the driver, without Dask unless "
        "a dashboard is wanted). None: processes, except for a run with at most `workers` sources to "
        "process (one new video, a refresh that adds a few): threads, where importing and starting "
        "Dask costs more than the run's own work",
    )
    decode_threads: int = Field(
        2,
        ge=1,
        description="decoder threads (frame threading) for the last sources of a "
        "run, which leave workers idle; the others decode with one (on busy cores frame "
        "threading costs ~15% more CPU for nothing)",
    )
    dashboard: bool | None = Field(
        None,
        description="a LocalCluster's dashboard and the workers' profiler that "
        "feeds it. None: only for runs listing more than 50 sources (starting it costs "
        "~0.35 s, a tenth of a small run)",
    )
    start_method: Literal["auto", "fork", "forkserver", "spawn"] = Field(
        "auto",
        description="how local worker processes start. auto: fork (workers inherit the driver's "
        "imports: ~0.2 s instead of seconds per worker) unless the CLIP stage runs (torch wants spawn)",
    )


class CacheConfig(_Section):
    """Scratch space for remote (http, https, s3) sources: each is downloaded just before it is processed
    and deleted right after, so the output never holds a second copy of the corpus. Not part of the
    config hash (it does not change the output)."""

    dir: str | None = Field(
        None, description="scratch folder; default OUT/cache (a temp folder for remote outputs)"
    )
    max_bytes: int = Field(
        20 * 2**30,
        ge=1,
        description="at most this many bytes downloaded at once on one "
        "machine; a source larger than this fails with that reason",
    )


class SnapshotConfig(_Section):
    """How long the shard files of replaced snapshots stay for readers that pinned them (docs/REFRESH.md,
    "Snapshots and vacuum"). Not part of the config hash (it does not change the samples)."""

    retention_days: float = Field(
        7.0,
        ge=0,
        description="a snapshot's files stay this long after a newer snapshot replaced it "
        "(as Delta Lake's VACUUM); 0: only the latest snapshot's files are kept",
    )
    vacuum: Literal["auto", "off"] = Field(
        "auto",
        description="auto: every build, refresh and caption run ends with a vacuum under this "
        "retention; off: only `makeanything vacuum CORPUS` deletes retired files",
    )


class BuildConfig(_Section):
    taxonomy: str | None = Field(None, description="tasks.yaml path; default: the bundled taxonomy")
    cache: CacheConfig = CacheConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    segment: SegmentConfig = SegmentConfig()
    align: AlignConfig = AlignConfig()
    process: ProcessConfig = ProcessConfig()
    progress: ProgressConfig = ProgressConfig()
    quality: QualityConfig = QualityConfig()
    select: SelectConfig = SelectConfig()
    clip: ClipConfig = ClipConfig()
    vector: VectorConfig = VectorConfig()
    caption: CaptionConfig = CaptionConfig()
    shards: ShardConfig = ShardConfig()
    cluster: ClusterConfig = ClusterConfig()
    snapshots: SnapshotConfig = SnapshotConfig()

    @classmethod
    def load(cls, path: str | Path | None) -> BuildConfig:
        """Defaults when ``path`` is None; ConfigError naming the file and every bad key otherwise."""
        if path is None:
            return cls()
        try:
            return cls.model_validate(read_yaml_mapping(path))
        except ValidationError as e:
            raise ConfigError("\n".join(explain(e, str(path), cls))) from None

    def sha(self) -> str:
        """Hash of everything that changes which samples are made (not where it runs, nor their VLM captions)."""
        data = self.model_dump(exclude={"cluster", "cache", "caption", "snapshots"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
