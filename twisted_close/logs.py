"""
Log observers for C{twistd --logger}.

C{twistd -n --logger twisted_close.logs.json_observer closedemo} writes one
JSON object per log event to standard output, outcome fields included.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, eventAsJSON

from ._outcome import Outcome

__all__ = ["json_observer"]


def _as_json(event: LogEvent) -> str:
    outcome = event.get("outcome")
    if isinstance(outcome, Outcome):
        event = {**event, "outcome": outcome.as_dict()}
    # The record separator lets twisted.logger.eventsFromJSONLogFile read it.
    return "\x1e" + eventAsJSON(event) + "\n"


def json_observer(out: IO[Any] | None = None) -> ILogObserver:
    """
    One JSON object per event on C{out} (standard output by default).
    """
    return FileLogObserver(sys.stdout if out is None else out, _as_json)
