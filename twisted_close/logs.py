"""
Log observers for C{twistd --logger}.

C{twistd -n --logger twisted_close.logs.json_lines_observer closedemo}
writes one JSON object per line to standard output (newline-delimited
JSON, what log shippers read), outcome fields included.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, eventAsJSON

from ._outcome import Outcome

__all__ = ["json_lines_observer", "json_observer"]


def _plain(event: LogEvent) -> LogEvent:
    outcome = event.get("outcome")
    if isinstance(outcome, Outcome):
        return {**event, "outcome": outcome.as_dict()}
    return event


def _as_json_line(event: LogEvent) -> str:
    # eventAsJSON escapes newlines inside strings: one event, one line.
    return eventAsJSON(_plain(event)) + "\n"


def _as_json_seq(event: LogEvent) -> str:
    return "\x1e" + eventAsJSON(_plain(event)) + "\n"


def json_lines_observer(out: IO[Any] | None = None) -> ILogObserver:
    """
    One JSON object per line on C{out} (standard output by default): each
    line is one event for C{json.loads}.
    """
    return FileLogObserver(sys.stdout if out is None else out, _as_json_line)


def json_observer(out: IO[Any] | None = None) -> ILogObserver:
    """
    One JSON text per event on C{out} (standard output by default), each
    after an RFC 7464 record separator (C{\\x1e}), as Twisted's own
    C{jsonFileLogObserver} writes: for reading back with
    C{twisted.logger.eventsFromJSONLogFile}.  For log shippers and
    C{json.loads} per line, use L{json_lines_observer}.
    """
    return FileLogObserver(sys.stdout if out is None else out, _as_json_seq)
