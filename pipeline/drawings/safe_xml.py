"""Parse untrusted XML (SVG files from the internet) into an ElementTree without the classic traps.

Entity declarations are allowed only when they cannot blow up: no external (SYSTEM/PUBLIC) or parameter
entities, no entity that refers to another one (the "billion laughs" needs nesting), and short values
(Illustrator writes a few plain ones). External DTDs are never read. Nothing is ever fetched.
"""

from __future__ import annotations

import pyexpat
import xml.etree.ElementTree as ET

MAX_ENTITY_CHARS = 1024


class UnsafeXml(ValueError):
    """The document is not well-formed or tries something a parser of untrusted input must refuse."""


def _qname(name: str) -> str:
    """expat's 'uri}local' (namespace_separator='}') -> ElementTree's '{uri}local'."""
    return "{" + name if "}" in name else name


def _entity_decl(
    name: str,
    is_parameter: int,
    value: str | None,
    base: str | None,
    system_id: str | None,
    public_id: str | None,
    notation: str | None,
) -> None:
    if is_parameter:
        raise UnsafeXml(f"parameter entity {name!r} declared (not allowed)")
    if value is None or system_id or public_id:
        raise UnsafeXml(f"external entity {name!r} declared (never fetched)")
    if "&" in value:
        raise UnsafeXml(f"entity {name!r} refers to other entities (entity expansion attack)")
    if len(value) > MAX_ENTITY_CHARS:
        raise UnsafeXml(f"entity {name!r} is {len(value)} characters long (at most {MAX_ENTITY_CHARS})")


def _external_ref(*_: object) -> int:
    raise UnsafeXml("external entity reference (never fetched)")


def parse(data: bytes) -> ET.Element:
    """The root element of ``data``; raises UnsafeXml naming the problem and where it is."""
    builder = ET.TreeBuilder()
    p = pyexpat.ParserCreate(namespace_separator="}")
    p.buffer_text = True
    p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.StartElementHandler = lambda name, attrs: builder.start(
        _qname(name), {_qname(k): v for k, v in attrs.items()}
    )
    p.EndElementHandler = lambda name: builder.end(_qname(name))
    p.CharacterDataHandler = builder.data
    p.EntityDeclHandler = _entity_decl
    p.ExternalEntityRefHandler = _external_ref
    try:
        p.Parse(data, True)
    except pyexpat.ExpatError as e:
        raise UnsafeXml(str(e)) from None
    return builder.close()
