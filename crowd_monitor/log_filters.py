"""A logging filter that masks credentials in every log line, whatever wrote it.

The detection code already redacts camera URIs where it logs them (crowd_monitor.redaction); this is the net
under it, for library messages and tracebacks that quote a URI with a password: `scheme://user:secret@host`
and password-like query parameters (`?password=`, `&token=`, ...) come out as `***`.
"""

import logging
import re

# user:password@ inside any URI in free text (the password runs to the last "@" before a space, path or quote).
_URI_PASSWORD = re.compile(r"""(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:'"]*):([^\s/?#'"]*)@""")
_SECRET_PARAM = re.compile(
    r"([?&](?:password|passwd|pass|pwd|token|access_token|api_key|apikey|secret)=)([^&#\s'\"]*)", re.I
)


def redact_text(text: str) -> str:
    text = _URI_PASSWORD.sub(r"\1:***@", text)
    return _SECRET_PARAM.sub(r"\1***", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is the handler's problem, not ours
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
