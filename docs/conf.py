"""Sphinx configuration of the spuriouslab documentation.

Build it with the one command that CI runs (``.ci/run``, the ``docs`` step)::

    python3 -m sphinx -W --keep-going -q -b html docs docs/_build/html

Warnings are errors.  The experiment reference, the registry tables and the CLI reference are generated from the
code at build time (``docs/_ext/spuriouslab_docs.py``), so they cannot drift from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import spuriouslab

project = "spuriouslab"
author = "spuriouslab maintainers"
copyright = "spuriouslab maintainers (MIT License)"
release = spuriouslab.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
    "spuriouslab_docs",
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = []
html_theme = "alabaster"
html_theme_options = {
    "description": "spurious-feature memorization and feature contamination",
    "fixed_sidebar": True,
    "page_width": "1240px",
    "body_max_width": "none",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}

# The docstrings are reST with numpydoc sections (Parameters, Returns, Attributes, Examples): numpydoc renders
# them and its parser's warnings fail the build.  Its style validation (numpydoc_validation_checks) is off: most
# docstrings are prose by design (see [tool.ruff] in pyproject.toml, which leaves the D rules out).
numpydoc_show_class_members = False  # members are listed explicitly in docs/api/*.rst
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
smartquotes = False  # ``--set`` and ``--all`` stay two hyphens in help texts and docstrings
# Nothing is fetched at build time: no intersphinx, no remote images.
nitpicky = False
