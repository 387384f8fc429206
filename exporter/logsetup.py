"""Log lines as text for people or JSON for log pipelines (one object per line).

JSON lines about one Flux object carry ``kind``, ``namespace``, ``name`` (and ``revision``
where there is one) as keys, like Flux's own controllers, so pipelines filter per object.
"""

from __future__ import annotations

import json
import logging
import sys
import time


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


def configure(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # urllib3 logs each of its own retries to the API server; our line after the last one
    # (with the call and its outcome) is the one an operator needs.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
