"""The Jinja2 environment: strict about undefined names, YAML-safe scalars."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
import yaml

from orchestrator.resources import data_dir

TEMPLATE_DIR = data_dir("templates")


def yaml_scalar(value: Any) -> str:
    """A scalar written so that any YAML parser reads back exactly `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    dumped = yaml.safe_dump(str(value), default_flow_style=True, width=1 << 30, allow_unicode=True)
    return dumped.removesuffix("\n...\n").removesuffix("\n")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = yaml_scalar
    return env


def render_template(name: str, context: dict[str, Any]) -> str:
    return environment().get_template(name).render(context)
