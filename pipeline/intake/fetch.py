"""Before the stages: what a source is (metadata signature; content hash only when new or changed) and
where it is read. Remote sources are fetched on the worker (pipeline.run.worker.run_fetched)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from pipeline.intake.fingerprint import fingerprint, stat_signature
from pipeline.intake.remote import is_remote, remote_info
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
    """Where a source is read, the ledger's key for signatures: its URL (as ``uri`` shows it, credentials
    redacted, so a rotated password or a newly signed link is the same source), or its absolute local
    path; an item inside a file (archive member, ndjson line) adds its uri:
    ``/abs/pack.tgz#pack.tgz#package/1f600.svg``."""
    if is_remote(source.uri):
        return source.uri
    where = os.path.abspath(source.path)  # not resolve(): a realpath per source is slow at 100,000
    inside = source.data or source.span is not None or source.problem
    return f"{where}#{source.uri}" if inside else where


def prepare(source: Source, known: tuple[str, str] | None, verify_content: bool = False) -> Prepared:
    """On a driver thread or a worker. ``known``: the ledger's (signature, sha256) for this location.
    Reads the content only when the signature is new or changed, or with ``verify_content``."""
    if source.problem and source.kind in ("video", "images"):  # not there: the probe rejects it with why
        return Prepared(source, "", "")
    if is_remote(source.uri):
        try:
            info = source.remote or remote_info(source.read_url)
        except Exception as e:  # noqa: BLE001 - reported per source (SourceResult.of redacts any URL in it)
            return Prepared(source, "", "", error=f"remote source unavailable: {type(e).__name__}: {e}")
        source = replace(source, remote=info)
        if known and info.signature and known[0] == info.signature and not verify_content:
            return Prepared(source, known[1], info.signature)
        return Prepared(source, "", info.signature)
    stat = stat_signature(source)
    if known and stat and known[0] == stat and not verify_content:
        return Prepared(source, known[1], stat)
    return Prepared(source, fingerprint(source), stat, hashed=True)
