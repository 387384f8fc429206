"""Every log record is one line, in either format, tracebacks and thread deaths included."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from exporter import logsetup


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = threading.excepthook, sys.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    threading.excepthook, sys.excepthook = hooks


def fail() -> None:
    raise ValueError("bad\ninput")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_traceback_and_a_thread_death_are_one_line_each(
    fmt: str, capfd: pytest.CaptureFixture[str]
) -> None:
    logsetup.configure(fmt)
    try:
        fail()
    except ValueError:
        logging.getLogger("exporter.test").exception("it failed")
    thread = threading.Thread(target=fail, name="doomed")
    thread.start()
    thread.join()
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 2, err
    assert "it failed" in lines[0] and "ValueError: bad" in lines[0]
    assert "thread doomed ended on an uncaught exception" in lines[1]
    if fmt == "json":
        assert "ValueError" in json.loads(lines[1])["exception"]


def test_the_allocator_is_tuned_unless_the_operator_chose() -> None:
    from exporter import allocator

    assert allocator.tune({}) is True  # glibc, as in the image and on Debian
    chosen = {"MALLOC_ARENA_MAX": "8", "MALLOC_MMAP_THRESHOLD_": "131072"}
    assert allocator.tune(chosen) is True  # nothing to set: the variables win
