"""
pytest options of this suite: C{--update-docs} lets the tests that make
tracked files (the demo page's screenshot) write them; otherwise they write
into temporary directories and the tree stays as it was.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-docs",
        action="store_true",
        help="write docs/demo.png from the screenshot test",
    )


@pytest.fixture
def update_docs(request: pytest.FixtureRequest) -> bool:
    """
    Whether this run may rewrite tracked files under C{docs/}.
    """
    return bool(request.config.getoption("--update-docs"))
