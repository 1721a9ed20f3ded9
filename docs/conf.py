"""
Sphinx configuration: the narrative pages (MyST markdown) and, through
pydoctor's Sphinx extension, the API reference under C{api/}.

Build: C{python -m sphinx -W -b html docs build/docs}.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# pydoctor loads scripts/apidocs.py's System by module name.
sys.path.insert(0, str(ROOT / "scripts"))

project = "twisted-close"
author = "twisted-close contributors"
extensions = [
    "myst_parser",
    "sphinx.ext.intersphinx",
    "pydoctor.sphinx_ext.build_apidocs",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "prometheus/*.md"]
myst_heading_anchors = 3
html_theme = "alabaster"
# No network at build time: pydoctor's own inventory is the only one.
intersphinx_mapping: dict[str, tuple[str, tuple[str, ...]]] = {}
intersphinx_disabled_reftypes = ["*"]

# The same build as scripts/apidocs.py: names documented where users import
# them from, and any pydoctor warning a Sphinx warning (so an error with -W).
pydoctor_args = [
    "--warnings-as-errors",
    "--system-class=apidocs.System",
    "--project-name=twisted-close",
    "--html-output={outdir}/api",
    str(ROOT / "twisted_close"),
]
pydoctor_url_path = "api/"
