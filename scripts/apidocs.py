"""
Build the API reference of twisted_close with pydoctor into build/apidocs.

Run from anywhere: C{python scripts/apidocs.py}.  Any warning (a link that
does not resolve, a field for a parameter that does not exist, bad epytext)
fails the build.  No intersphinx: the build needs no network, so names from
Python and Twisted are written C{...} in docstrings, not linked.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from pydoctor import driver, model

ROOT = Path(__file__).resolve().parent.parent


class System(model.System):
    """
    Document each name that a package exports from one of its private
    modules where users import it from: C{twisted_close.Ledger}, not
    C{twisted_close._ledger.Ledger}.

    pydoctor moves a re-exported name into the package only when its own
    module's C{__all__} does not list it; ours list what they define, so
    the move is made here, before pydoctor relates classes to each other.
    """

    def postProcess(self) -> None:
        for package in list(self.objectsOfType(model.Package)):
            for name in package.all or ():
                ob = self.objForFullName(package.expandName(name))
                if ob is None:
                    # A warning, so that the build fails (-W).
                    package.report(f"cannot document {name!r} of __all__ here")
                elif ob.parent is not package and ob.parent.name.startswith("_"):
                    ob.reparent(package, name)
        super().postProcess()


def build(source: Path, output: Path) -> int:
    """
    Write the reference of package C{source} into C{output}, replacing what
    was there (so that no page of a renamed module lingers).

    @return: pydoctor's exit status: 0 if it warned of nothing.
    """
    shutil.rmtree(output, ignore_errors=True)
    status: int = driver.main(
        [
            "--quiet",
            "--warnings-as-errors",
            f"--system-class={__name__}.System",
            "--project-name=twisted-close",
            f"--html-output={output}",
            str(source),
        ]
    )
    return status


if __name__ == "__main__":
    sys.exit(build(ROOT / "twisted_close", ROOT / "build" / "apidocs"))
