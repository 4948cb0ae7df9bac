"""The server's log lines: text or one JSON object per line (``[server] log_format``).

Both formats go to stderr and cover our loggers (``tidings.*``), uvicorn's and, at
warning and above, any other library's. A JSON line holds ``time`` (ISO-8601, UTC),
``level``, ``logger`` and ``message``, then the record's structured fields (what the
call passed as ``extra``), and ``exception`` with the traceback when there is one.

Nothing secret is meant to reach a log line in the first place: call sites log ids,
schemes and hosts, never tokens, signatures, store passwords, subscriber credentials or
message bodies. ``redact`` is the safety net behind them: both formats pass the free
text of every line (message and traceback) through it, masking a URL's credentials and
the value of anything named like a secret (``password=``, ``X-Auth-Token:``, ...).
Structured fields are not scanned: only our own code sets them, with values that are
safe by construction. The websockets library's debug lines (frames and handshake headers,
quoted in part) are dropped.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from typing import Any

import msgspec

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers given our handler; nothing of theirs reaches the root logger.
OWN_LOGGERS = ("tidings", "uvicorn")
# One line per request (tidings.observe.requests), and the line saying where the server
# listens: shown whatever the level (log_format = "json" is what asks for the former).
ACCESS_LOGGER = "tidings.access"
STARTUP_LOGGER = "tidings.serve"

# scheme://userinfo@ : the userinfo runs to the last "@" before the path or a space, so a
# password holding an "@" is masked whole.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)([^/\s]*)@")
# name=value, name: value, 'name': 'value' for names that hold secrets.
_SECRET_VALUE = re.compile(
    r"(?i)\b("
    r"x-auth-token|x-subject-token|auth[-_]token|access[-_]token|refresh[-_]token|token"
    r"|url-signature|signature|password|passwd|pwd|secret(?:[-_]key)?"
    r"|api[-_]?key|access[-_]key|private[-_]key|encryption[-_]key|signing[-_]key"
    r"|(?:proxy-)?authorization"
    r")(['\"]?\s*[:=]\s*['\"]?)((?:(?:basic|bearer|digest|negotiate)\s+)?[^\s'\",;&(){}\[\]<>]+)"
)
MASK = "***"


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:{MASK}@" if colon else f"{match.group(1)}{MASK}@"


def redact(text: str) -> str:
    """``text`` with URL credentials and values named like secrets masked."""
    if "://" in text:
        text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_VALUE.sub(rf"\1\2{MASK}", text)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, redacted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# What every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
    "color_message",  # uvicorn's coloured copy of the message
}
_encode = msgspec.json.Encoder(enc_hook=str).encode


class _UtcSecond:
    """The formatted second of the last line (lines come many to a second)."""

    whole = -1
    text = ""


def utc_time(created: float) -> str:
    """``2024-05-01T12:00:00.123Z``."""
    whole = int(created)
    cache = _UtcSecond
    if whole != cache.whole:
        cache.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        cache.whole = whole
    return f"{cache.text}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (msgspec escapes line breaks inside strings)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in document:
                document[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = redact(record.exc_text)
        if record.stack_info:
            document["stack"] = redact(self.formatStack(record.stack_info))
        return _encode(document).decode()


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return os.path.dirname(spec.origin) + os.sep


class WireDebugFilter(logging.Filter):
    """Drops the websockets library's debug lines (uvicorn hands it its logger): they
    quote frames and handshake headers, so a token or a message body in part."""

    def __init__(self) -> None:
        super().__init__()
        self._source = _package_dir("websockets")

    def filter(self, record: logging.LogRecord) -> bool:
        source = self._source
        return not (
            source is not None
            and record.levelno <= logging.DEBUG
            and record.pathname.startswith(source)
        )


def configure(level: str, log_format: str) -> None:
    """Send every log line to stderr in ``log_format`` ("text" or "json"), ours and
    uvicorn's at ``level``, other libraries' at warning and above."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(WireDebugFilter())
    numeric = logging.getLevelName(level.upper())
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(numeric)
        logger.propagate = False
    for name in (ACCESS_LOGGER, STARTUP_LOGGER):
        logging.getLogger(name).setLevel(min(numeric, logging.INFO))
    # No line shows the thread or process names: not worth looking up for every record.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # Python's warnings become log lines too (in the chosen format).
    logging.captureWarnings(True)
