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
    from twisted.python import usage
    from twisted.scripts.twistd import run

    from twisted_close.closedemo.tap import Options

    options = sys.argv[1:] if argv is None else argv
    # twistd would answer a bad option with its own help and the command line
    # it built ("-n" included); check them first and answer in our words.
    try:
        # usage.Options carries no annotations.
        Options().parseOptions(options)  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        sys.exit(f"python -m twisted_close: {e}\n(--help lists the options)")
    # twistd reads sys.argv, and names its errors after sys.argv[0].
    sys.argv = ["python -m twisted_close", "-n", "--pidfile=", "closedemo", *options]
    run()


if __name__ == "__main__":
    main()
