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

    from .closedemo.tap import Options

    options = sys.argv[1:] if argv is None else argv
    # Checked here first: twistd would name the error after its own
    # arguments ("python -m twisted_close -n: ..."), which the user never typed.
    try:
        if not {"--help", "--version", "-h"} & set(options):
            Options().parseOptions(options)  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        print(f"python -m twisted_close: {e}", file=sys.stderr)
        print("python -m twisted_close --help lists the options", file=sys.stderr)
        sys.exit(2)
    # twistd reads sys.argv.
    sys.argv = ["python -m twisted_close", "-n", "--pidfile=", "closedemo", *options]
    run()


if __name__ == "__main__":
    main()
