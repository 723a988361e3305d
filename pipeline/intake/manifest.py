"""Manifest: the YAML list of sources with task labels. Validation names the entry and field, before any work.

A source that is not there (a path, a folder with no images, a glob that matches nothing) is not a manifest
error: it becomes a source that the probe rejects with its reason, so the run goes on with the rest."""

from __future__ import annotations

import glob as globlib
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pipeline.config import explain
from pipeline.intake.remote import expand_glob, is_remote
from pipeline.io.redact import redact_text, redact_url
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source

LOCATIONS = ("path", "glob", "dir", "url", "svg", "strokes")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


class ManifestError(ValueError):
    """The manifest cannot be used; the message names the file, entry and field."""


class Entry(BaseModel):
    """One `sources:` item: exactly one of path / glob / dir / url / svg / strokes, plus the task label."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    glob: str | None = None
    dir: str | None = None
    url: str | None = None
    svg: str | None = None  # an SVG file, glob, folder or .tgz/.zip archive: one item per SVG
    strokes: str | None = None  # a QuickDraw-style .ndjson file: one item per line
    task: str
    subject: str | None = None
    id: str | None = None
    ordered: bool = True  # dir only: False when file names say nothing about the step order
    license: str | None = None  # e.g. an SPDX id; kept in every sample json and the dataset card
    attribution: str | None = None  # who made the source, as its license asks to credit them
    members: str | None = (
        None  # svg only: keep the files/members whose name (or path, with a /) matches (1f6*.svg, color/svg/*)
    )
    skip: list[str] = []  # svg only: annotations never drawn (#id, .class, element name)
    order: Literal["paint", "outline-first"] = "paint"  # svg only: reveal line work before colour fills

    @model_validator(mode="after")
    def _one_location(self) -> Entry:
        given = [k for k in LOCATIONS if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(LOCATIONS)} (got {', '.join(given) or 'none'})")
        if self.url and urlparse(self.url).scheme not in ("http", "https", "s3"):
            raise ValueError(f"url {self.url!r} must be http://, https:// or s3://")
        if not self.ordered and not self.dir:
            raise ValueError("ordered: false applies to dir entries (folders of step images) only")
        for field, given in (
            ("members", self.members),
            ("skip", self.skip),
            ("order", self.order != "paint"),
        ):
            if given and not self.svg:
                raise ValueError(f"{field} applies to svg entries only")
        bad = [s for s in self.skip if not s.strip(" #.") or " " in s.strip()]
        if bad:
            raise ValueError(f"skip selectors are #id, .class or an element name, not {bad[0]!r}")
        if self.id is not None and (self.svg or self.strokes):
            raise ValueError(
                "an id names one source; svg and strokes entries give one source per item, "
                "each keyed by its content"
            )
        if self.id is not None and not self.id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"id {self.id!r} may only hold letters, digits, '-' and '_'")
        return self


def _fail(manifest: Path, i: int, field: str, msg: str) -> ManifestError:
    return ManifestError(f"{manifest}: sources[{i}].{field}: {redact_text(msg)}")


def _remote(url: str, **fields) -> Source:
    """A remote source, named by its redacted URL (pipeline.io.redact) in everything written, read from the
    URL as given."""
    shown = redact_url(url)
    return Source(uri=shown, path="", kind="video", secret_url="" if shown == url else url, **fields)


def load_manifest(path: str | Path, taxonomy: Taxonomy) -> list[Source]:
    """Resolve every entry to Sources (globs expanded, paths relative to the manifest's folder)."""
    manifest = Path(path)
    try:
        raw = yaml.safe_load(manifest.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{manifest}: manifest file not found") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{manifest}: not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list):
        raise ManifestError(f"{manifest}: expected a mapping with a `sources:` list")
    base = manifest.resolve().parent
    sources: list[Source] = []
    ids: dict[str, int] = {}
    for i, item in enumerate(raw["sources"]):
        if not isinstance(item, dict):
            raise ManifestError(f"{manifest}: sources[{i}]: expected a mapping, got {type(item).__name__}")
        try:
            e = Entry(**item)
        except ValidationError as err:
            raise ManifestError(explain(err, str(manifest), Entry, ("sources", i))[0]) from None
        if e.task not in taxonomy:
            raise _fail(
                manifest, i, "task", f"unknown task {e.task!r} (known: {', '.join(sorted(taxonomy.tasks))})"
            )
        if e.id is not None:
            if e.id in ids:
                raise _fail(manifest, i, "id", f"id {e.id!r} already used by sources[{ids[e.id]}]")
            ids[e.id] = i
        sources.extend(_resolve(manifest, base, i, e, taxonomy))
    return sources


def _resolve(manifest: Path, base: Path, i: int, e: Entry, taxonomy: Taxonomy) -> list[Source]:
    task = taxonomy[e.task]
    if e.svg or e.strokes:
        # only here: the drawing collectors (emoji names and all) would cost every build ~40 ms of start-up
        from pipeline.drawings.collect import Origin, stroke_sources, svg_sources

        origin = Origin(task, i, e.subject, e.license, e.attribution, tuple(e.skip), e.order)
        try:
            return (
                svg_sources(base, e.svg, e.members, origin)
                if e.svg
                else stroke_sources(base, e.strokes, origin)
            )
        except ValueError as err:
            raise _fail(manifest, i, "svg" if e.svg else "strokes", str(err)) from None
    common = dict(task=task, entry=i, subject=e.subject, license=e.license, attribution=e.attribution)
    if e.url:
        return [_remote(e.url, id=e.id, **common)]
    if e.path:
        p = base / e.path
        return [Source(uri=e.path, path=str(p), kind="video", id=e.id, **common)]
    if e.glob and is_remote(e.glob):
        try:
            listed = expand_glob(e.glob)
        except Exception as err:  # noqa: BLE001 - unreachable store, no credentials...: a manifest error
            raise _fail(manifest, i, "glob", f"cannot list {e.glob!r}: {type(err).__name__}: {err}") from None
        if not listed:
            return [
                Source(uri=e.glob, path=e.glob, kind="video", problem=f"no files match: {e.glob}", **common)
            ]
        if e.id and len(listed) > 1:
            raise _fail(manifest, i, "id", "an id names one source; this glob matches several")
        return [_remote(url, id=e.id, remote=info, **common) for url, info in listed]
    if e.glob:
        matches = sorted(globlib.glob(str(base / e.glob), recursive=True))
        if not matches:
            pattern = str(base / e.glob)
            return [
                Source(uri=e.glob, path=pattern, kind="video", problem=f"no files match: {pattern}", **common)
            ]
        if e.id and len(matches) > 1:
            raise _fail(manifest, i, "id", "an id names one source; this glob matches several")
        inside = str(base).rstrip("/") + "/"  # string prefix: Path arithmetic per match is slow at 100,000
        return [
            Source(
                uri=m[len(inside) :] if m.startswith(inside) else m, path=m, kind="video", id=e.id, **common
            )
            for m in matches
        ]
    folder = base / e.dir  # type: ignore[operator]
    images = (
        tuple(sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS))
        if folder.is_dir()
        else ()
    )
    problem = (
        f"folder not found: {folder}"
        if not folder.is_dir()
        else ""
        if images
        else f"folder holds no images: {folder} (looked for {', '.join(sorted(IMAGE_EXTS))})"
    )
    return [
        Source(
            uri=e.dir,
            path=str(folder),
            kind="images",
            images=images,
            id=e.id,
            ordered=e.ordered,
            problem=problem,
            **common,
        )
    ]  # type: ignore[arg-type]
