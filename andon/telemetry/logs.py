"""Log output: human-readable lines by default, one JSON object a line with
`andon serve --log-format json`.

A structured line (`fact`) carries its fields twice: as `key=value` in the message a
person reads, and as fields of the JSON object a log pipeline reads.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from andon.telemetry import tracing

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS = "andon_fields"

Value = str | int | float | None


def fact(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Value) -> None:
    """One line: `name key=value ...`; fields that are None are left out."""
    if not logger.isEnabledFor(level):
        return
    given = {k: v for k, v in fields.items() if v is not None}
    message = " ".join([name, *(f"{k}={v}" for k, v in given.items())])
    logger.log(level, message, extra={_FIELDS: {"event": name, **given}})


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        trace_id = tracing.trace_id()
        if trace_id is not None:
            line["trace_id"] = trace_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, its date and time written once a second rather than once a line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"


def configure(level: str, fmt: str) -> None:
    """Send every logger's lines (uvicorn's too) to stderr in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    # Neither format shows a line's thread, process or place in the source: a record
    # need not look them up (logging's documented switches; about 5 µs a line).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if level.lower() != "debug":  # procrastinate logs every job it defers at info
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
