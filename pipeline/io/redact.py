"""Credentials out of every URL a person or a file will see: ``http://user:secret@host/v1`` is shown as
``http://***@host/v1``, ``...?X-Amz-Signature=abc&part=2`` as ``...?X-Amz-Signature=***&part=2``.

The redacted form is also what names a remote source where a name must last (the ledger's ``loc``, the
sample json's ``source.uri``): it does not change when a password is rotated or a link signed again, and a
URL without credentials is left exactly as it is, so ledgers written before stay valid. The URL with its
credentials is used only to read from the server (pipeline.io.http_auth).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

HIDDEN = "***"
# Query parameters that carry a secret: signatures of pre-signed links (X-Amz-Signature, X-Goog-Signature,
# Signature, sig), tokens (token, access_token, X-Amz-Security-Token), keys (key, api_key, AWSAccessKeyId),
# passwords and credentials. Matched anywhere in the name, case-insensitively: a harmless parameter that
# matches (say ``keyframe``) is hidden too, which costs nothing but the detail.
SECRET_PARAM = re.compile(r"sig|token|secret|passw|pwd|credential|key|auth", re.IGNORECASE)
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# ``user:secret@host`` without a scheme, as some libraries quote an address they could not use (Dask:
# "invalid address 'user:secret@10.0.0.5:8786'"). The colon tells it from an e-mail address.
BARE_USERINFO = re.compile(r"(?<![\w/*])[^\s'\"<>`/@:]+:[^\s'\"<>`/@]*@(?=[\w.\[-])")


def _query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={HIDDEN}" if eq and SECRET_PARAM.search(unquote(name)) else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """``url`` with its userinfo and the values of secret query parameters replaced by ``***``; a URL
    without either comes back unchanged (same string)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL urllib can read (e.g. a bad IPv6 literal): hide all after the scheme
        return url.split("://", 1)[0] + f"://{HIDDEN}" if "://" in url else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    query = _query(parts.query) if parts.query else parts.query
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` (an error message, a log line) redacted, and any ``user:secret@``."""
    if "://" in text:
        text = URL.sub(lambda m: redact_url(m.group(0)), text)
    return BARE_USERINFO.sub(f"{HIDDEN}@", text) if "@" in text else text


def redact_json(value: object) -> object:
    """A JSON-like value (dicts, lists, strings...) with every string redacted: for a report or an index
    written as a whole, whatever field a URL or a message holding one ended up in."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value
