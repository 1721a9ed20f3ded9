"""
What the app does with signals: once a stop has begun, a second SIGTERM or
SIGINT is said in the log instead of stopping the reactor twice.  The
library never touches signal handlers; an app decides.
"""

from __future__ import annotations

import signal
import threading

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["QuietRepeatedStops", "quiet_repeated_stops"]

log = Logger(namespace="twisted_close")


def quiet_repeated_stops(reactor: object) -> None:
    """
    Once a stop has begun, a second SIGTERM or SIGINT (systemd signals every
    process of the unit; a user presses Ctrl-C twice) says so in the log
    instead of making the reactor raise C{ReactorNotRunning}.
    """
    call = getattr(reactor, "callFromThread", None)
    if call is None or threading.current_thread() is not threading.main_thread():
        return

    def already(number: int, frame: object) -> None:
        call(
            log.info,
            "Already stopping ({signal}); SIGKILL stops at once",
            signal=signal.Signals(number).name,
        )

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, already)


class QuietRepeatedStops(Service):
    """
    Calls L{quiet_repeated_stops} when the application begins to stop: add
    it last to the top service, so that it stops first.
    """

    def __init__(self, reactor: object) -> None:
        self.reactor = reactor

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        quiet_repeated_stops(self.reactor)
