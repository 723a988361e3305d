"""A subject from an item's file name: emoji files named by code points (Twemoji ``1f600.svg``, Noto
``emoji_u1f600.svg``) get the emoji's CLDR name ("grinning face"); other names become words
("arrow-left" -> "arrow left"). A file named by one zero-padded code point of a letter or digit (KanjiVG's
``06f22.svg``) gets the character: "the kanji 漢", "あ (hiragana letter a)"."""

from __future__ import annotations

import re
import unicodedata

import emoji

CODEPOINTS = re.compile(r"^(?:emoji_u)?([0-9a-f]{2,6}(?:[-_][0-9a-f]{2,6})*)$", re.IGNORECASE)
VS16 = "\ufe0f"
VARIANT = re.compile(r"^([0-9a-f]{5})-([A-Za-z][A-Za-z0-9]*)$", re.IGNORECASE)
PADDED = 5  # digits of a zero-padded code point file name (KanjiVG): "cafe.svg" stays a word


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


def character_name(c: str) -> str | None:
    """A letter, digit or sign as a subject: CJK ideographs as "the kanji X", others with their Unicode name."""
    if unicodedata.category(c)[0] not in "LNPS":
        return None
    name = unicodedata.name(c, "")
    return f"the kanji {c}" if not name or name.startswith("CJK") else f"{c} ({name.lower()})"


def subject_from_name(stem: str) -> str | None:
    variant = VARIANT.match(stem)  # KanjiVG's "04e14-Kaisho": the character, in a named form
    if variant and not CODEPOINTS.match(stem):  # "1f3f3-fe0f" is a sequence of code points
        name = subject_from_name(variant.group(1))
        return f"{name}, {variant.group(2)} form" if name else None
    m = CODEPOINTS.match(stem)
    if m:
        try:
            chars = "".join(chr(int(h, 16)) for h in re.split(r"[-_]", m.group(1)))
        except (ValueError, OverflowError):
            chars = ""
        name = emoji_name(chars) if chars else None
        if name is None and len(chars) == 1 and len(m.group(1)) >= PADDED:
            name = character_name(chars)
        if name:
            return name
    words = re.sub(r"[-_.\s]+", " ", stem).strip()
    return words or None
