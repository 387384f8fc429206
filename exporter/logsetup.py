"""Log lines as text for people or JSON for log pipelines (one object per line).

Whatever the format, a record is one line: a traceback is folded into it (`` | ``
between its lines in text, a field in JSON), and an exception that escapes a thread is
logged as such a line instead of the interpreter's raw traceback on stderr.

JSON lines about one Flux object carry ``kind``, ``namespace``, ``name`` (and ``revision``
where there is one) as keys, like Flux's own controllers, so pipelines filter per object.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from types import TracebackType


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("kind", "namespace", "name", "revision"):  # the object, as Flux logs it
            value = getattr(record, f"object_{key}", None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", " | ")


def _uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logging.getLogger("exporter").error("thread %s ended on an uncaught exception", name,
                                        exc_info=exc_info)  # fmt: skip


def _uncaught_main(
    exc_type: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, value, tb)
        return
    logging.getLogger("exporter").critical("uncaught exception", exc_info=(exc_type, value, tb))


def configure(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    threading.excepthook = _uncaught
    sys.excepthook = _uncaught_main
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # urllib3 logs each of its own retries to the API server; our line after the last one
    # (with the call and its outcome) is the one an operator needs.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
