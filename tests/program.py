"""
Run any command as a subprocess and read its output line by line, as
L{Twistd} does for C{twistd closedemo}: the README's example programs.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from .twistd_process import Twistd, environment

__all__ = ["Program"]


class Program(Twistd):
    """
    A running C{argv}, its standard output and error read line by line.
    """

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def finish(self, timeout: float = 10.0) -> int:
        """
        Wait for the program to exit and for its last line; its status.
        """
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return status
