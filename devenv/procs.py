"""Long-lived server processes that can be stopped from another Python process.

``scripts/dev-env up`` returns while its servers keep running, and ``down`` runs later in a
different process. So each server is remembered by pid and executable path, and stopped by
pid only after /proc confirms the pid still runs that executable (pids get reused). Inside
one process (pytest) the ``Popen`` object is kept and used instead, so children are reaped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Proc:
    name: str
    pid: int
    executable: str
    log: str
    popen: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def adopt(cls, name: str, popen: subprocess.Popen[bytes], log: Path) -> Proc:
        """Wrap a process someone else started (``popen.args[0]`` is the executable)."""
        args = popen.args
        first = args[0] if isinstance(args, list | tuple) else args
        if not isinstance(first, str | bytes | os.PathLike):
            raise TypeError(f"cannot tell the executable of {name} from {args!r}")
        return cls(name, popen.pid, str(Path(os.fsdecode(first)).resolve()), str(log), popen)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "executable": self.executable, "log": self.log}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Proc:
        pid = int(str(data["pid"]))
        return cls(str(data["name"]), pid, str(data["executable"]), str(data["log"]))

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            exe = os.readlink(f"/proc/{self.pid}/exe")
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        state = stat.rpartition(")")[2].split()[0]
        return state != "Z" and exe.removesuffix(" (deleted)") == self.executable

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. A process already gone is fine."""
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.terminate()
                try:
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if not self.alive():
                return
            os.kill(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.alive():
            raise RuntimeError(f"{self.name} (pid {self.pid}) survived SIGKILL")


def reap(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Wait up to ``grace`` seconds for a process asked to end, then kill it."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spawn(name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Proc:
    """Start ``argv`` in its own session, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    return Proc.adopt(name, popen, log)
