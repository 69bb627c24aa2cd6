"""Where the schemas and templates are, in a checkout or in an installed wheel.

A checkout (and an editable install) keeps them at the top of the repository;
a wheel carries them inside the orchestrator package (see pyproject.toml).
"""

from __future__ import annotations

import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def data_dir(name: str) -> str:
    """The directory `name` ("schema" or "templates")."""
    for candidate in (os.path.join(_PACKAGE_DIR, name), os.path.join(os.path.dirname(_PACKAGE_DIR), name)):
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(f"{name}/ is neither in {_PACKAGE_DIR} nor beside it: the installation is incomplete")
