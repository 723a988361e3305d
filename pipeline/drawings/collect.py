"""Expand ``svg:`` and ``strokes:`` manifest entries into one Source per item, and read an item's bytes.

``svg: PATH`` is a file, a glob, a folder (every ``*.svg`` under it) or a ``.tgz``/``.tar(.gz)``/``.zip``
archive such as an npm package tarball (its members are read once, here on the driver, so workers never
reopen the archive). ``strokes: FILE.ndjson`` gives one item per non-blank line (a byte span of the file).
Every item has its own uri (``ARCHIVE#MEMBER``, ``FILE#L12``) and content hash, hence its own key and
ledger row. An archive that breaks part-way keeps the members read before the break, plus one item that
reports the break.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import json
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.drawings.emoji_names import subject_from_name
from pipeline.taxonomy import Task
from pipeline.work import Source

ARCHIVES = (".tgz", ".tar.gz", ".tar", ".zip")
GUARD_BYTES = 64 << 20  # archive members larger than this are never decompressed into memory (bombs)


@dataclass
class Origin:
    """What every item of one entry shares."""

    task: Task
    entry: int
    subject: str | None
    license: str | None
    attribution: str | None


def _is_svg(name: str) -> bool:
    return name.lower().endswith(".svg")


def _uri(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _item(o: Origin, uri: str, path: str, name: str, kind: str = "svg", **extra: object) -> Source:
    subject = o.subject or (subject_from_name(PurePosixPath(name).stem) if kind == "svg" else None)
    return Source(
        uri=uri,
        path=path,
        task=o.task,
        kind=kind,
        entry=o.entry,
        subject=subject,  # type: ignore[arg-type]
        license=o.license,
        attribution=o.attribution,
        **extra,
    )  # type: ignore[arg-type]


def package_metadata(meta: bytes | None) -> tuple[str | None, str | None]:
    """(license, attribution) from an npm ``package.json``: its license, and name@version by author."""
    if not meta:
        return None, None
    try:
        pkg = json.loads(meta)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None
    if not isinstance(pkg, dict):
        return None, None
    lic = pkg.get("license")
    lic = lic.get("type") if isinstance(lic, dict) else lic
    author = pkg.get("author")
    author = author.get("name") if isinstance(author, dict) else author
    who = "@".join(str(pkg[k]) for k in ("name", "version") if pkg.get(k))
    attribution = ", ".join(str(x) for x in (who, author) if x) or None
    return (str(lic) if lic else None), attribution


def _entries(archive: Path) -> Iterator[tuple[str, int, Callable[[], bytes]]]:
    """(name, unpacked size, reader) of every file in a zip or tar archive, in archive order."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, lambda info=info: zf.read(info)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for m in tf:
                if m.isfile():
                    yield m.name, m.size, lambda m=m: tf.extractfile(m).read()  # type: ignore[union-attr]


def _members(archive: Path) -> Iterator[tuple[str, bytes | None, str]]:
    """(name, bytes, problem) for each SVG member, then ('package.json', bytes, '') for the shallowest one."""
    meta: tuple[int, bytes] | None = None
    n = 0
    try:
        for name, size, read in _entries(archive):
            if _is_svg(name):
                n += 1
                yield (
                    (name, None, f"too large: {size} bytes unpacked")
                    if size > GUARD_BYTES
                    else (name, read(), "")
                )
            elif PurePosixPath(name).name == "package.json" and size <= GUARD_BYTES:
                depth = len(PurePosixPath(name).parts)
                if meta is None or depth < meta[0]:
                    meta = (depth, read())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
        yield "", None, f"unreadable archive after {n} SVG members: {type(e).__name__}: {e}"
    if meta:
        yield "package.json", meta[1], ""


def svg_sources(base: Path, spec: str, members: str | None, origin: Origin) -> list[Source]:
    """Items of an ``svg:`` entry; raises ValueError (the manifest names the entry) when it names nothing."""
    path = base / spec
    match = (
        (lambda name: fnmatch.fnmatch(PurePosixPath(name).name, members)) if members else (lambda name: True)
    )
    if path.name.lower().endswith(ARCHIVES) and path.is_file():
        items, meta = [], None
        for name, data, problem in _members(path):
            if name == "package.json" and not problem:
                meta = data
            elif not name or match(name):
                items.append((name, data, problem))
        lic, att = package_metadata(meta)
        origin = Origin(
            origin.task, origin.entry, origin.subject, origin.license or lic, origin.attribution or att
        )
        out = [
            _item(
                origin,
                f"{spec}#{name or '(rest of archive)'}",
                str(path),
                name,
                data=data or b"",
                problem=problem,
            )
            for name, data, problem in items
        ]
        if not out:
            raise ValueError(f"{spec!r} holds no SVG members" + (f" matching {members!r}" if members else ""))
        return out
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_svg(p.name) and match(p.name))
        lic, att = package_metadata(
            (path / "package.json").read_bytes() if (path / "package.json").is_file() else None
        )
        origin = Origin(
            origin.task, origin.entry, origin.subject, origin.license or lic, origin.attribution or att
        )
    elif re.search(r"[*?\[]", spec):
        files = sorted(
            Path(m) for m in globlib.glob(str(path), recursive=True) if Path(m).is_file() and match(m)
        )
    else:
        files = [path]  # one file: a missing or unreadable one is reported as that item's rejection
    if not files:
        raise ValueError(f"{spec!r} matches no SVG files" + (f" named {members!r}" if members else ""))
    return [_item(origin, _uri(f, base), str(f), f.name) for f in files]


def stroke_sources(base: Path, spec: str, origin: Origin) -> list[Source]:
    """One item per non-blank line of the ndjson file (a missing file is a manifest error)."""
    path = base / spec
    if not path.is_file():
        raise ValueError(f"{spec!r} is not a file")
    out, start = [], 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            end = start + len(line)
            if line.strip():
                out.append(
                    _item(
                        origin,
                        f"{spec}#L{lineno}",
                        str(path),
                        "",
                        kind="strokes",
                        span=(start, start + len(line.rstrip(b"\r\n"))),
                    )
                )
            start = end
    if not out:
        raise ValueError(f"{spec!r} holds no drawings (no non-blank lines)")
    return out


def read_item(source: Source, max_bytes: int) -> bytes:
    """The item's bytes; raises ValueError for an item too large to read, OSError for a missing file."""
    if source.data:
        data = source.data
    elif source.span is not None:
        start, end = source.span
        if end - start > max_bytes:
            raise ValueError(f"too large: {end - start} bytes (at most {max_bytes})")
        with open(source.path, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
    else:
        size = Path(source.path).stat().st_size
        if size > max_bytes:
            raise ValueError(f"too large: {size} bytes (at most {max_bytes})")
        data = Path(source.path).read_bytes()
    if len(data) > max_bytes:
        raise ValueError(f"too large: {len(data)} bytes (at most {max_bytes})")
    return data
