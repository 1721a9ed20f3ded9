"""
Log observers for C{twistd --logger}, and a bounded access log.

C{twistd -n --logger twisted_close.logs.json_lines_observer closedemo}
writes one JSON object per line to standard output (newline-delimited
JSON, what log shippers read), outcome fields included.

L{AccessLog} writes twisted.web's combined log lines with every field from
the network cut (L{access_log_line}) to a file that rotates by size and
keeps a bounded number of files.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import FileLogObserver, ILogObserver, LogEvent, eventAsJSON
from twisted.python.logfile import LogFile
from twisted.web.http import datetimeToLogString
from twisted.web.iweb import IAccessLogFormatter, IRequest
from zope.interface import provider

from ._clock import default_clock
from ._outcome import Outcome
from ._text import printable

__all__ = ["AccessLog", "access_log_line", "json_lines_observer", "json_observer"]


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


def _quoted(raw: bytes | str) -> str:
    # One bounded word (see printable) that a quote cannot end early.
    text = printable(raw.encode("utf-8") if isinstance(raw, str) else raw)
    return text.replace('"', '\\"')


@provider(IAccessLogFormatter)
def access_log_line(timestamp: str, request: IRequest) -> str:
    """
    twisted.web's C{combinedLogFormatter} line, each field from the network
    (the target, the method, C{Referer}, C{User-Agent}) cut to
    L{twisted_close._text.FIELD_BYTES} bytes with its length noted and
    escaped as L{twisted_close.web.printable} does, so that a line is
    bounded whatever the client sent.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    ip = _quoted(host) if isinstance(host, (str, bytes)) else "-"
    untyped: Any = request
    target = " ".join(
        _quoted(field) for field in (request.method, request.uri, untyped.clientproto)
    )
    referrer = _quoted(request.getHeader(b"referer") or b"-")
    agent = _quoted(request.getHeader(b"user-agent") or b"-")
    length = untyped.sentLength or "-"
    return (
        f'"{ip}" - - {timestamp} "{target}" {untyped.code} {length} '
        f'"{referrer}" "{agent}"'
    )


class AccessLog:
    """
    A line per request (L{access_log_line}) to the file C{path}, which is
    rotated once it reaches C{size} bytes (C{path.1}, C{path.2}, ...), at
    most C{files} files in all: the oldest is deleted.

    Give it to a C{Site} as its C{log} (C{site.log = AccessLog(...)}).
    The file is opened at the first line, not before.
    """

    def __init__(
        self,
        path: str,
        *,
        files: int = 5,
        size: int = 10_000_000,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param files: the most files kept, the one written included, >= 2.
        @param size: the bytes a file reaches before it is rotated, >= 1.
        @raise ValueError: if C{files} or C{size} is out of bounds.
        """
        for name, value, least in (("files", files, 2), ("size", size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"{name} must be a whole number >= {least}, not {value!r}"
                )
        self.clock = default_clock(clock)
        self.path = os.path.abspath(path)
        self.files = files
        self.size = size
        self.file: LogFile | None = None
        self._second = -1
        self._timestamp = ""

    def __call__(self, request: IRequest) -> None:
        """
        Write C{request}'s line.
        """
        now = int(self.clock.seconds())
        if now != self._second:
            # One date string a second, as twisted.web's own log does.
            self._second, self._timestamp = now, datetimeToLogString(now)
        if self.file is None:
            self.file = LogFile(
                os.path.basename(self.path),
                os.path.dirname(self.path),
                rotateLength=self.size,
                maxRotatedFiles=self.files - 1,
            )
        self.file.write(access_log_line(self._timestamp, request) + "\n")
        self.file.flush()

    def close(self) -> None:
        """
        Close the file, if open; the next line opens it again.
        """
        if self.file is not None:
            self.file.close()
            self.file = None
