"""Keeping camera credentials out of everything but admin: logs, messages, API responses."""

import re
from urllib.parse import unquote_plus

# userinfo password: up to the LAST "@" before the path, as urlsplit and FFmpeg parse it ("u:p@ss@host" -> "p@ss").
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):([^/?#]*)@")
# Many IP cameras take credentials in the query string (e.g. snapshot.cgi?usr=admin&pwd=...).
_SECRET_PARAM = re.compile(r"([?&](?:password|passwd|pass|pwd|token|access_token|api_key|apikey)=)([^&#]*)", re.I)


def redact_uri(uri: str) -> str:
    """The URI with its password (userinfo or a password-like query parameter) replaced by ***."""
    redacted = _PASSWORD.sub(r"\1:***@", uri)
    return _SECRET_PARAM.sub(r"\1***", redacted)


def scrub(text: str, uri: str) -> str:
    """Remove the URI's secrets from text we did not write ourselves (library exception messages)."""
    secrets = [m.group(2) for m in (_PASSWORD.match(uri), *_SECRET_PARAM.finditer(uri)) if m and m.group(2)]
    secrets += [unquote_plus(s) for s in secrets]
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
