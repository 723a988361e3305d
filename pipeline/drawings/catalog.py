"""What a package says about its drawings: license and attribution, and a subject per file.

Read from the metadata files a package ships next to its SVGs: npm's ``package.json`` (license, name,
version, author), a Python wheel's or sdist's ``METADATA``/``PKG-INFO`` (License-Expression, License,
license classifiers, else a Creative Commons licence its description names, as KanjiVG's does), tabler's
``icons.json`` (name, tags) and OpenMoji's ``openmoji.json`` (annotation per hexcode). A file with no
entry falls back to its name (:func:`pipeline.drawings.emoji_names.subject_from_name`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email.parser import Parser

META_FILES = ("package.json", "METADATA", "PKG-INFO", "icons.json", "openmoji.json")
TAGS = 5  # tabler tags kept in a subject
CC = re.compile(
    r"Creative Commons\s+Attribution(?P<nc>[\s-]*Non-?Commercial)?(?P<sa>[\s-]*Share[\s-]*Alike)?"
    r"(?P<nd>[\s-]*No[\s-]*Deriv\w*)?\s+(?:License\s+)?(?P<v>\d\.\d)",
    re.IGNORECASE,
)
CLASSIFIER = "License :: OSI Approved :: "


@dataclass
class Catalog:
    license: str | None = None
    attribution: str | None = None
    subjects: dict[str, str] = field(default_factory=dict)  # by file stem, lower case

    def subject(self, stem: str) -> str | None:
        return self.subjects.get(stem.lower())


def _json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def package_json(meta: bytes) -> tuple[str | None, str | None]:
    """(license, attribution) from an npm ``package.json``: its license, and name@version by author."""
    pkg = _json(meta)
    if not isinstance(pkg, dict):
        return None, None
    lic = pkg.get("license")
    lic = lic.get("type") if isinstance(lic, dict) else lic
    author = pkg.get("author")
    author = author.get("name") if isinstance(author, dict) else author
    who = "@".join(str(pkg[k]) for k in ("name", "version") if pkg.get(k))
    attribution = ", ".join(str(x) for x in (who, author) if x) or None
    return (str(lic) if lic else None), attribution


def cc_id(text: str) -> str | None:
    """The SPDX id of the first Creative Commons licence a text names ("...Attribution-Share Alike 3.0")."""
    m = CC.search(text)
    if not m:
        return None
    kinds = "".join(f"-{k.upper()}" for k in ("nc", "sa", "nd") if m.group(k))
    return f"CC-BY{kinds}-{m.group('v')}"


def python_metadata(meta: bytes) -> tuple[str | None, str | None]:
    """(license, attribution) from core metadata (a wheel's METADATA, an sdist's PKG-INFO)."""
    msg = Parser().parsestr(meta.decode("utf-8", "replace"))
    lic = msg.get("License-Expression") or (msg.get("License") or "").strip().splitlines()[:1]
    lic = lic[0] if isinstance(lic, list) and lic else lic
    if not lic:
        named = [c[len(CLASSIFIER) :] for c in msg.get_all("Classifier") or [] if c.startswith(CLASSIFIER)]
        lic = named[0] if named else cc_id(msg.get_payload() or "")
    who = "@".join(str(msg[k]) for k in ("Name", "Version") if msg.get(k))
    attribution = ", ".join(str(x) for x in (who, msg.get("Author")) if x) or None
    return (str(lic) if lic else None), attribution


def _words(name: str) -> str:
    return re.sub(r"[-_.\s]+", " ", name).strip()


def tabler_subjects(data: bytes) -> dict[str, str]:
    """``home`` -> "home (house, homepage, main, start, dashboard)" from tabler's icons.json."""
    icons = _json(data)
    out = {}
    for key, icon in (icons if isinstance(icons, dict) else {}).items():
        if not isinstance(icon, dict):
            continue
        name = _words(str(icon.get("name") or key))
        tags = [_words(str(t)) for t in icon.get("tags") or [] if isinstance(t, str | int)]
        tags = [t for t in dict.fromkeys(tags) if t and t != name and t not in name.split()][:TAGS]
        out[str(key).lower()] = f"{name} ({', '.join(tags)})" if tags else name
    return out


def openmoji_subjects(data: bytes) -> dict[str, str]:
    """``1f600`` -> "grinning face" from OpenMoji's openmoji.json (also its own extras, E000-)."""
    rows = _json(data)
    return {
        str(r["hexcode"]).lower(): str(r["annotation"])
        for r in (rows if isinstance(rows, list) else ())
        if isinstance(r, dict) and r.get("hexcode") and r.get("annotation")
    }


def read_catalog(files: dict[str, bytes]) -> Catalog:
    """The catalog of a package from its metadata files (by base name, as in META_FILES)."""
    cat = Catalog()
    for name, read in (
        ("package.json", package_json),
        ("METADATA", python_metadata),
        ("PKG-INFO", python_metadata),
    ):
        if name in files and cat.license is None and cat.attribution is None:
            cat.license, cat.attribution = read(files[name])
    if "icons.json" in files:
        cat.subjects.update(tabler_subjects(files["icons.json"]))
    if "openmoji.json" in files:
        cat.subjects.update(openmoji_subjects(files["openmoji.json"]))
    return cat
