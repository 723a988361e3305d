"""On a worker: fetch a source if it is remote, run it through the stages and return a small, picklable
result (pipeline.corpus.source_result)."""

from __future__ import annotations

import time
import traceback
from dataclasses import replace
from pathlib import Path

from pipeline import __version__
from pipeline.caption.record import template_record
from pipeline.config import BuildConfig
from pipeline.corpus.schema import conform
from pipeline.corpus.shards import Sample, encode_jpeg
from pipeline.corpus.source_result import SourceResult
from pipeline.intake.remote import remote_info
from pipeline.intake.scratch import ScratchCache
from pipeline.report.shot_strip import shot_strip
from pipeline.stages.base import Stage
from pipeline.work import Reject, Sequence, Source, Work


def source_key(source: Source, sha256: str) -> str:
    return source.id or sha256[:16]


def _meta(work: Work, seq: Sequence, key: str, config: BuildConfig) -> dict:
    """The sample json in the one schema (pipeline.corpus.schema): a field a source kind lacks is null."""
    src, task = work.source, work.source.task
    p = work.probe
    frames = [
        {"step": i + 1, "source_frame": f.source_frame, "file": f.file, "time": f.time, **f.scores}
        for i, f in enumerate(seq.frames)
    ]
    if config.clip.store_embeddings:
        for d, f in zip(frames, seq.frames):
            if f.embedding is not None:
                d["clip_embedding"] = [round(float(x), 5) for x in f.embedding]
    return conform(
        {
            "key": key,
            "task": task.describe(),
            "caption": template_record(seq.caption),
            "layout": task.layout.describe(),
            "frames": frames,
            "source": {
                "uri": src.uri,
                "id": src.id,
                "sha256": work.sha256,
                "kind": src.kind,
                "subject": src.subject,
                "license": src.license,
                "attribution": src.attribution,
                **{
                    k: p.get(k)
                    for k in ("fps", "frame_count", "width", "height", "duration", "codec", "rotation")
                },
            },
            "scores": {"process": seq.segment_scores, **seq.scores},
            "pipeline": {"version": __version__, "config_sha": config.sha()},
        }
    )


def run_source(source: Source, sha256: str, stages: list[Stage], config: BuildConfig) -> SourceResult:
    """Apply every stage; a Reject is a normal outcome, any other exception a failure with its traceback."""
    work = Work(source=source, sha256=sha256)
    res = SourceResult.of(source, sha256, "ok")
    try:
        for stage in stages:
            t0 = time.perf_counter()
            work = stage(work)
            res.seconds[stage.name] = round(time.perf_counter() - t0, 4)
        base = source_key(source, sha256)
        for n, seq in enumerate(work.sequences):
            key = f"{source.task.id}_{base}_s{n}"
            res.samples.append(
                Sample(
                    key=key,
                    jpg=encode_jpeg(seq.grid, config.shards.jpeg_quality),
                    caption=seq.caption,
                    meta=_meta(work, seq, key, config),
                )
            )
    except Reject as r:
        res.status, res.reason = "rejected", r.reason
    except Exception as e:  # noqa: BLE001 - one bad source must not stop the run
        res.status, res.reason = "failed", f"{type(e).__name__}: {e}"
        res.notes.append(traceback.format_exc(limit=8))
    if source.kind == "images" and work.sequences:
        used = {f.file for seq in work.sequences for f in seq.frames}
        unused = [Path(p).name for p in source.images if Path(p).name not in used]
        if unused:  # README: a folder's steps that are not in any sequence are named, with the drops' reasons
            work.notes.append(f"steps not used ({len(unused)} of {len(source.images)}): {', '.join(unused)}")
    res.drops, res.notes, res.probe, res.gates = work.drops, res.notes + work.notes, work.probe, work.gates
    if res.samples:
        res.shots_png = shot_strip(work)
    return res


def run_fetched(
    source: Source, sha256: str, stages: list[Stage], config: BuildConfig, cache_dir: str
) -> SourceResult:
    """On a worker: run the stages on a local source; a remote one is first downloaded into the scratch
    cache (hashed on the way, so its content is read once) and removed as soon as its stages are done."""
    if source.path:
        return run_source(source, sha256, stages, config)
    try:
        cache = ScratchCache(cache_dir, config.cache.max_bytes)
        with cache.fetch(source.read_url, source.remote or remote_info(source.read_url)) as (path, sha):
            return run_source(replace(source, path=str(path)), sha, stages, config)
    except Exception as e:  # noqa: BLE001 - network, space: a failed source (--retry-failed redoes it)
        return SourceResult.of(source, sha256, "failed", f"download failed: {type(e).__name__}: {e}")
