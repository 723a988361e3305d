"""A subject from an item's file name: emoji files named by code points (Twemoji ``1f600.svg``, Noto
``emoji_u1f600.svg``) get the emoji's CLDR name ("grinning face"); other names become words
("arrow-left" -> "arrow left")."""

from __future__ import annotations

import re
import unicodedata

import emoji

CODEPOINTS = re.compile(r"^(?:emoji_u)?([0-9a-f]{2,6}(?:[-_][0-9a-f]{2,6})*)$", re.IGNORECASE)
VS16 = "\ufe0f"


def emoji_name(chars: str) -> str | None:
    """CLDR name of an emoji sequence, also when the file name dropped (or kept) its variation selectors."""
    bare = chars.replace(VS16, "")
    for candidate in (chars, bare, bare + VS16, bare[:1] + VS16 + bare[1:]):
        data = emoji.EMOJI_DATA.get(candidate)
        if data:
            return data["en"].strip(":").replace("_", " ")
    parts = [c for c in bare if c not in ("\u200d", "\u20e3")]
    if not parts or not all(emoji.is_emoji(c) or unicodedata.category(c) == "So" for c in parts):
        return None  # e.g. "cafe.svg": hex digits, but a word, not an emoji
    return " ".join(unicodedata.name(c, "").lower() for c in parts).strip() or None


def subject_from_name(stem: str) -> str | None:
    m = CODEPOINTS.match(stem)
    if m:
        try:
            name = emoji_name("".join(chr(int(h, 16)) for h in re.split(r"[-_]", m.group(1))))
        except (ValueError, OverflowError):
            name = None
        if name:
            return name
    words = re.sub(r"[-_.\s]+", " ", stem).strip()
    return words or None
