"""
C{python -m twisted_close [options]}: serve the demo, the same as
C{twistd -n --pidfile= closedemo [options]} (in the foreground, logging to
standard output, no pid file).  C{--help} lists the options.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """
    Run C{twistd closedemo} in the foreground with C{argv} (by default,
    this program's arguments) as closedemo's options.
    """
    from twisted.scripts.twistd import run

    options = sys.argv[1:] if argv is None else argv
    # twistd reads sys.argv, and names its errors after sys.argv[0].
    sys.argv = ["python -m twisted_close", "-n", "--pidfile=", "closedemo", *options]
    run()


if __name__ == "__main__":
    main()
