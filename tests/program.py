"""
Run any command as a subprocess and read its output line by line, as
L{Twistd} does for C{twistd closedemo}: the README's example programs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .twistd_process import Twistd

__all__ = ["Program"]


class Program(Twistd):
    """
    A running C{argv}, its standard output and error read line by line.
    """

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        super().__init__(cwd, argv=list(argv))

    def finish(self, timeout: float = 10.0) -> int:
        """
        Wait for the program to exit and for its last line; its status.
        """
        status = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return status
