"""HTTP requests to a URL that may carry credentials (``https://user:secret@host/...``), as curl sends them.

urllib does not: it takes ``user:secret@host`` for the host name and fails to resolve it. Here the
userinfo leaves the URL and goes as a Basic ``Authorization`` header, unless the caller sends its own
(a bearer API key wins), so the server sees the URL without it and no log of the request line holds it.
"""

from __future__ import annotations

import base64
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit


def request(
    url: str, *, data: bytes | None = None, method: str | None = None, headers: dict[str, str] | None = None
) -> urllib.request.Request:
    """A urllib Request for ``url`` with its userinfo (if any) moved into Basic auth."""
    parts = urlsplit(url)
    headers = dict(headers or {})
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
        headers.setdefault("Authorization", f"Basic {token}")
        url = urlunsplit(parts._replace(netloc=host))
    return urllib.request.Request(url, data=data, headers=headers, method=method)
