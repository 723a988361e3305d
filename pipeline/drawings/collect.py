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
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.drawings.catalog import META_FILES, Catalog, read_catalog
from pipeline.drawings.emoji_names import subject_from_name
from pipeline.taxonomy import Task
from pipeline.work import Source

ARCHIVES = (".tgz", ".tar.gz", ".tar", ".zip", ".whl")  # a wheel is a zip (PyPI packages such as kanjivg)
GUARD_BYTES = 64 << 20  # archive members larger than this are never decompressed into memory (bombs)


@dataclass
class Origin:
    """What every item of one entry shares."""

    task: Task
    entry: int
    subject: str | None
    license: str | None
    attribution: str | None
    skip: tuple[str, ...] = ()  # the entry's annotation selectors
    order: str = "paint"  # the entry's reveal order


def _is_svg(name: str) -> bool:
    return name.lower().endswith(".svg")


def _uri(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _item(
    o: Origin,
    uri: str,
    path: str,
    name: str,
    kind: str = "svg",
    catalog: Catalog | None = None,
    **extra: object,
) -> Source:
    stem = PurePosixPath(name).stem
    subject = o.subject or (
        ((catalog and catalog.subject(stem)) or subject_from_name(stem)) if kind == "svg" else None
    )
    return Source(
        uri=uri,
        path=path,
        task=o.task,
        kind=kind,
        entry=o.entry,
        subject=subject,  # type: ignore[arg-type]
        license=o.license or (catalog and catalog.license),
        attribution=o.attribution or (catalog and catalog.attribution),
        svg_skip=o.skip,
        svg_order=o.order,  # type: ignore[arg-type]
        **extra,
    )  # type: ignore[arg-type]


def matcher(members: str | None) -> Callable[[str], bool]:
    """Whether a member or file path is chosen: by its name (``1f6*.svg``), or, for a pattern with a
    ``/``, by as many trailing path components as the pattern has (``color/svg/1F60*.svg`` chooses
    ``package/color/svg/1F600.svg`` and not ``package/src/.../1F600.svg``)."""
    if not members:
        return lambda name: True
    depth = len(PurePosixPath(members).parts)
    return lambda name: fnmatch.fnmatch(
        "/".join(PurePosixPath(name.replace("\\", "/")).parts[-depth:]), members
    )


def _entries(archive: Path) -> Iterator[tuple[str, int, Callable[[], bytes]]]:
    """(name, unpacked size, reader) of every file in a zip or tar archive, in archive order."""
    if archive.name.lower().endswith((".zip", ".whl")):
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
    """(name, bytes, problem) for each SVG member, then (base name, bytes, '') for the shallowest member
    of each metadata file the catalog reads (package.json, METADATA, icons.json, openmoji.json)."""
    meta: dict[str, tuple[int, bytes]] = {}
    n = 0
    try:
        for name, size, read in _entries(archive):
            base = PurePosixPath(name).name
            if _is_svg(name):
                n += 1
                yield (
                    (name, None, f"too large: {size} bytes unpacked")
                    if size > GUARD_BYTES
                    else (name, read(), "")
                )
            elif base in META_FILES and size <= GUARD_BYTES:
                depth = len(PurePosixPath(name).parts)
                if base not in meta or depth < meta[base][0]:
                    meta[base] = (depth, read())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
        yield "", None, f"unreadable archive after {n} SVG members: {type(e).__name__}: {e}"
    for base, (_, data) in meta.items():
        yield base, data, ""


def _folder_catalog(folder: Path) -> Catalog:
    """The catalog from the shallowest metadata files in a folder (an unpacked package)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.rglob("*"), key=lambda p: len(p.parts)):
        if p.name in META_FILES and p.name not in found and p.is_file() and p.stat().st_size <= GUARD_BYTES:
            found[p.name] = p
    return read_catalog({k: p.read_bytes() for k, p in found.items()})


def svg_sources(base: Path, spec: str, members: str | None, origin: Origin) -> list[Source]:
    """Items of an ``svg:`` entry; raises ValueError (the manifest names the entry) when it names nothing."""
    path = base / spec
    match = matcher(members)
    if path.name.lower().endswith(ARCHIVES) and path.is_file():
        items, meta = [], {}
        for name, data, problem in _members(path):
            if name in META_FILES and not problem:
                meta[name] = data or b""
            elif not name or match(name):
                items.append((name, data, problem))
        catalog = read_catalog(meta)
        out = [
            _item(
                origin,
                f"{spec}#{name or '(rest of archive)'}",
                str(path),
                name,
                catalog=catalog,
                data=data or b"",
                problem=problem,
            )
            for name, data, problem in items
        ]
        if not out:
            raise ValueError(f"{spec!r} holds no SVG members" + (f" matching {members!r}" if members else ""))
        return out
    catalog = None
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and _is_svg(p.name) and match(p.relative_to(path).as_posix())
        )
        catalog = _folder_catalog(path)
    elif re.search(r"[*?\[]", spec):
        files = sorted(
            Path(m) for m in globlib.glob(str(path), recursive=True) if Path(m).is_file() and match(m)
        )
    else:
        files = [path]  # one file: a missing or unreadable one is reported as that item's rejection
    if not files:
        raise ValueError(f"{spec!r} matches no SVG files" + (f" named {members!r}" if members else ""))
    return [_item(origin, _uri(f, base), str(f), f.name, catalog=catalog) for f in files]


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
