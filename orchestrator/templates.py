"""The Jinja2 environment: strict about undefined names, YAML-safe scalars."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import jinja2

from orchestrator.resources import data_dir
from orchestrator.yaml_out import scalar

TEMPLATE_DIR = data_dir("templates")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = scalar
    # A JSON string is also a TOML basic string and a Dockerfile double-quoted word.
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (compiling them is most of a render's template time); none if unwritable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "cable-orchestrator", "jinja")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(directory) if os.access(directory, os.W_OK) else None


def render_template(name: str, context: dict[str, Any]) -> str:
    return environment().get_template(name).render(context)
