"""Render every selected region's files, check each one, then write them all or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from orchestrator.errors import InputError, RenderError
from orchestrator.model import Inventory, Mode, RegionSettings
from orchestrator.region_context import region_context
from orchestrator.schema_check import format_path, schema_problems
from orchestrator.templates import render_template
from orchestrator.yaml_loader import load_yaml_text

# Output file -> template, per mode. Paths are relative to DIR/<env>/<region>/.
_COMMON = {"navigator.yml": "navigator.yml.j2", "Dockerfile": "Dockerfile.j2", "rails/config/cable.yml": "rails/cable.yml.j2"}
FILES_BY_MODE: dict[Mode, dict[str, str]] = {
    "action_cable": _COMMON,
    "anycable": {**_COMMON, "rails/config/anycable.yml": "rails/anycable.yml.j2"},
    "integrated": {
        **_COMMON,
        "hub.yml": "hub.yml.j2",
        "rails/lib/action_cable/subscription_adapter/http_broadcast.rb": "rails/http_broadcast.rb.j2",
    },
}
# Rendered YAML files checked against a schema of ours, beyond parsing back.
_SCHEMA_OF = {"navigator.yml": "navigator.schema.json", "hub.yml": "hub.schema.json"}


@dataclass(frozen=True)
class RenderedRegion:
    settings: RegionSettings
    files: dict[str, str]

    @property
    def directory(self) -> PurePosixPath:
        return PurePosixPath(self.settings.environment.name, self.settings.region.code)


def select_regions(
    inventory: Inventory,
    regions: list[str] | None = None,
    mode: Mode | None = None,
    websocket_enabled: bool | None = None,
) -> list[RegionSettings]:
    """Every (environment, region) pair, or those in `regions`, in a stable order."""
    wanted = set(regions) if regions else None
    return [
        inventory.settings(env_name, code, mode, websocket_enabled)
        for env_name in sorted(inventory.environments)
        for code in sorted(inventory.environments[env_name].regions)
        if wanted is None or code in wanted
    ]


def render_region(inventory: Inventory, settings: RegionSettings) -> RenderedRegion:
    context = region_context(inventory, settings)
    files = {
        output: render_template(template, context)
        for output, template in sorted(FILES_BY_MODE[settings.mode].items())
    }
    for output, text in files.items():
        _check(f"{settings.environment.name}/{settings.region.code}/{output}", output, text)
    return RenderedRegion(settings, files)


def _check(label: str, output: str, text: str) -> None:
    if not output.endswith(".yml"):
        return
    # Rails evaluates ERB in its YAML files before parsing; <%= %> tags stay plain scalars here.
    try:
        loaded = load_yaml_text(text, label)
    except InputError as error:
        raise RenderError(f"rendered YAML does not parse back: {error}") from None
    schema = _SCHEMA_OF.get(output)
    if schema is None:
        if not isinstance(loaded.data, dict):
            raise RenderError(f"{label}: rendered to something that is not a mapping")
        return
    problems = schema_problems(schema, loaded.data)
    if problems:
        details = "; ".join(f"{format_path(path)}: {message}" for path, message in problems)
        raise RenderError(f"{label}: does not match {schema}: {details}")
