"""Before the stages: what a source is (metadata signature; content hash only when new or changed), and on
the worker, remote sources fetched into the bounded scratch cache just for the time they are processed."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from pipeline.config import BuildConfig
from pipeline.fingerprint import fingerprint, stat_signature
from pipeline.remote import is_remote, remote_info
from pipeline.result import SourceResult, run_source
from pipeline.scratch import ScratchCache
from pipeline.stages.base import Stage
from pipeline.work import Source


@dataclass(frozen=True)
class Prepared:
    """A source with what the driver needs to decide whether to process it."""

    source: Source
    sha256: str  # '' for a remote source not seen before: hashed on the worker while it is fetched
    stat: str  # metadata signature ('' when there is none)
    hashed: bool = False  # the content was read now (the ledger's signature was missing or differed)
    error: str = ""

    @property
    def loc(self) -> str:
        return location(self.source)


def location(source: Source) -> str:
    """Where a source is read: its URL, or its absolute local path (the ledger's key for signatures); an
    item inside a file (archive member, ndjson line) adds its uri: ``/abs/pack.tgz#pack.tgz#package/1f600.svg``."""
    if is_remote(source.uri):
        return source.uri
    where = os.path.abspath(source.path)  # not resolve(): a realpath per source is slow at 100,000
    inside = source.data or source.span is not None or source.problem
    return f"{where}#{source.uri}" if inside else where


def prepare(source: Source, known: tuple[str, str] | None, verify_content: bool = False) -> Prepared:
    """On a driver thread or a worker. ``known``: the ledger's (signature, sha256) for this location.
    Reads the content only when the signature is new or changed, or with ``verify_content``."""
    if is_remote(source.uri):
        try:
            info = source.remote or remote_info(source.uri)
        except Exception as e:  # noqa: BLE001 - reported per source, the run goes on
            return Prepared(source, "", "", error=f"remote source unavailable: {type(e).__name__}: {e}")
        source = replace(source, remote=info)
        if known and info.signature and known[0] == info.signature and not verify_content:
            return Prepared(source, known[1], info.signature)
        return Prepared(source, "", info.signature)
    stat = stat_signature(source)
    if known and stat and known[0] == stat and not verify_content:
        return Prepared(source, known[1], stat)
    return Prepared(source, fingerprint(source), stat, hashed=True)


def run_fetched(source: Source, sha256: str, stages: list[Stage], config: BuildConfig,
                cache_dir: str) -> SourceResult:
    """On a worker: run the stages on a local source; a remote one is first downloaded into the scratch
    cache (hashed on the way, so its content is read once) and removed as soon as its stages are done."""
    if source.path:
        return run_source(source, sha256, stages, config)
    try:
        cache = ScratchCache(cache_dir, config.cache.max_bytes)
        with cache.fetch(source.uri, source.remote or remote_info(source.uri)) as (path, sha):
            return run_source(replace(source, path=str(path)), sha, stages, config)
    except Exception as e:  # noqa: BLE001 - network, space: a failed source (--retry-failed redoes it)
        return SourceResult(entry=source.entry, uri=source.uri, task=source.task.id, sha256=sha256,
                            status="failed", reason=f"download failed: {type(e).__name__}: {e}")
