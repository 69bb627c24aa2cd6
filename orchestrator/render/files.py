"""Render every file of one environment's image, and check each one the way its consumer will read it."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from orchestrator.atomic import OutputFile
from orchestrator.errors import InputError, RenderError
from orchestrator.model import MODES, Environment, Inventory, Mode, RegionSettings
from orchestrator.render import image, modes
from orchestrator.render.navigator_config import CGI_SCRIPT_VARIABLE, NAVIGATOR_SCHEMA, boot_config, full_config
from orchestrator.yaml_out import dump_sections
from orchestrator.schema_check import format_path, schema_problems
from orchestrator.templates import render_template
from hub.yaml_loader import load_yaml_text

# Output file -> template, for files rendered from a template with the image context.
IMAGE_TEMPLATES = {
    "Dockerfile": "Dockerfile.j2",
    "fly.toml": "fly.toml.j2",
}
SCRIPTS = {
    "navigator/bin/start": "image/start.sh.j2",
    "navigator/bin/refresh": "image/refresh.sh.j2",
    "navigator/bin/cgi-refresh": "image/cgi-refresh.sh.j2",
}
RAILS_TEMPLATES = {
    "rails/config/cable.yml": "rails/cable.yml.j2",
    "rails/lib/action_cable/subscription_adapter/http_broadcast.rb": "rails/http_broadcast.rb.j2",
    "rails/lib/action_cable/subscription_adapter/any_cable_http.rb": "rails/any_cable_http.rb.j2",
}
# Rendered YAML files checked against a schema of ours, beyond parsing back.
_SCHEMA_OF = {"navigator.yml": NAVIGATOR_SCHEMA, "boot.yml": NAVIGATOR_SCHEMA, "hub.yml": "hub.schema.json"}


@dataclass(frozen=True)
class RenderedEnvironment:
    environment: Environment
    settings: tuple[RegionSettings, ...]
    files: dict[str, OutputFile]

    @property
    def directory(self) -> PurePosixPath:
        return PurePosixPath(self.environment.name)


def regions_by_mode(settings: Iterable[RegionSettings]) -> dict[Mode, list[str]]:
    grouped: dict[Mode, list[str]] = {}
    for entry in settings:
        grouped.setdefault(entry.mode, []).append(entry.region.code)
    return grouped


def render_environment(inventory: Inventory, settings: list[RegionSettings]) -> RenderedEnvironment:
    """Every file of one environment's image; `settings` holds every region of that environment."""
    environment = settings[0].environment
    context = image.image_context(inventory, environment, (entry.mode for entry in settings))
    texts: dict[str, str] = {output: render_template(template, context) for output, template in IMAGE_TEMPLATES.items()}
    scripts = {
        output: render_template(template, {**context, "cgi_variable": CGI_SCRIPT_VARIABLE})
        for output, template in SCRIPTS.items()
    }
    texts.update(
        {output: render_template(template, rails_context(inventory)) for output, template in RAILS_TEMPLATES.items()}
    )
    texts[f"navigator/{image.IMAGE_MANIFEST}"] = image.image_manifest(inventory, environment)
    for output, text in {**texts, **scripts}.items():
        check_file(f"{environment.name}/{output}", output, text)
    for entry in settings:
        base = f"navigator/regions/{entry.region.code}"
        texts.update({f"{base}/{name}": text for name, text in region_files(inventory, entry).items()})
    texts.update({f"navigator/{name}": text for name, text in image.shipped_inventory(inventory).items()})
    files = {output: OutputFile(text) for output, text in texts.items()}
    files.update({output: OutputFile(text, executable=True) for output, text in scripts.items()})
    files.update({f"navigator/{name}": OutputFile(text) for name, text in image.tool_files().items()})
    brokers = image.hub_brokers(inventory, environment, (entry.mode for entry in settings))
    files.update({f"navigator/{name}": OutputFile(text) for name, text in image.broker_client_files(brokers).items()})
    return RenderedEnvironment(environment, tuple(settings), dict(sorted(files.items())))


def region_files(inventory: Inventory, settings: RegionSettings) -> dict[str, str]:
    files = {
        "navigator.yml": navigator_yml(inventory, settings),
        "boot.yml": _navigator_text(inventory, settings, boot_config(inventory, settings), "boot.yml"),
        image.REGION_SETTINGS: image.region_settings(settings),
    }
    if settings.mode == "integrated" or (settings.mode == "hub" and settings.websocket_enabled):
        text = render_template("hub.yml.j2", _hub_context(inventory, settings))
        check_file(f"{_region_dir(settings)}/hub.yml", "hub.yml", text)
        files["hub.yml"] = text
    return files


def navigator_yml(inventory: Inventory, settings: RegionSettings) -> str:
    return _navigator_text(inventory, settings, full_config(inventory, settings), "navigator.yml")


def _region_dir(settings: RegionSettings) -> str:
    return f"{settings.environment.name}/navigator/regions/{settings.region.code}"


def _navigator_text(inventory: Inventory, settings: RegionSettings, config: dict[str, Any], name: str) -> str:
    """The configuration checked as data against what Navigator honours, then written (the writer is exact)."""
    _check_data(f"{_region_dir(settings)}/{name}", NAVIGATOR_SCHEMA, config)
    header = render_template("navigator.yml.j2", {
        "inventory": inventory.name,
        "app": inventory.app,
        "environment": settings.environment,
        "region": settings.region.code,
        "mode": settings.mode,
        "state": "on" if settings.websocket_enabled else "off",
        "what": "boot configuration" if name == "boot.yml" else "configuration",
    })
    return header + dump_sections(config)


def _hub_context(inventory: Inventory, settings: RegionSettings) -> dict[str, Any]:
    return {
        "inventory": inventory.name,
        "app": inventory.app,
        "environment": settings.environment,
        "region": settings.region,
        "websocket": inventory.websocket,
        "mode": settings.mode,
        "hub": inventory.hub,
        "broker": inventory.broker_for(settings.region.code),
        "limits": inventory.hub if settings.mode == "hub" else inventory.integrated,
        "cable_path": inventory.websocket.cable_path_for(settings.region.code),
    }


def rails_context(inventory: Inventory) -> dict[str, Any]:
    """What the Rails files are rendered from: the same for every region and mode of the app."""
    return {
        "inventory": inventory.name,
        "app_name": inventory.app.name,
        "default_broadcast_url": modes.broadcast_url(inventory, "integrated"),
        "signing_secret_env": inventory.websocket.signing_secret_env,
        "broadcast_key_env": inventory.websocket.broadcast_key_env,
    }


def check_file(label: str, output: str, text: str) -> None:
    """Parse a rendered file back as its consumer will; navigator.yml must hold only keys Navigator honours."""
    name = output.rsplit("/", 1)[-1]
    if name.endswith(".json"):
        _parse(label, json.loads, text, json.JSONDecodeError)
    elif name.endswith(".toml"):
        _parse(label, tomllib.loads, text, tomllib.TOMLDecodeError)
    elif name.endswith(".yml") and not output.startswith("navigator/inventory/"):
        _check_yaml(label, name, text)


def _parse(label: str, parse: Any, text: str, error_type: type[Exception]) -> None:
    try:
        parse(text)
    except error_type as error:
        raise RenderError(f"{label}: rendered text does not parse back: {error}") from None


def _check_yaml(label: str, name: str, text: str) -> None:
    # Rails evaluates ERB in its YAML files before parsing; <%= %> tags stay plain scalars here.
    try:
        loaded = load_yaml_text(text, label)
    except InputError as error:
        raise RenderError(f"rendered YAML does not parse back: {error}") from None
    schema = _SCHEMA_OF.get(name)
    if schema is None:
        if not isinstance(loaded.data, dict):
            raise RenderError(f"{label}: rendered to something that is not a mapping")
        return
    _check_data(label, schema, loaded.data)


def _check_data(label: str, schema: str, data: Any) -> None:
    problems = schema_problems(schema, data)
    if problems:
        details = "; ".join(f"{format_path(path)}: {message}" for path, message in problems)
        raise RenderError(f"{label}: does not match {schema}: {details}")


def recorded_settings(text: str, source: str, inventory: Inventory, environment: str) -> RegionSettings:
    """The settings a region was last rendered with (its render.json), for a render that leaves it as it is."""
    try:
        recorded = json.loads(text)
        region, mode, enabled = recorded["region"], recorded["mode"], recorded["websocket_enabled"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError([f"{source}: not a region's render settings ({error}); render that region explicitly with --region"]) from None
    if region not in inventory.regions or mode not in MODES or not isinstance(enabled, bool):
        raise InputError([f"{source}: region {region!r}, mode {mode!r}, websocket_enabled {enabled!r} do not fit "
                          f"{inventory.name}; render that region explicitly with --region"])
    return inventory.settings(environment, region, mode, enabled)


def select_settings(
    inventory: Inventory,
    regions: list[str] | None = None,
    mode: Mode | None = None,
    websocket_enabled: bool | None = None,
    recorded: Mapping[tuple[str, str], RegionSettings] | None = None,
) -> dict[str, list[RegionSettings]]:
    """Per environment to render, the settings of each of its regions, in a stable order.

    Without `regions`, every environment and region, with the overrides. With
    `regions`, only the environments that have one of them; their other regions
    keep what they were last rendered with (`recorded`), else the inventory's.
    """
    wanted = set(regions) if regions else None
    recorded = recorded or {}
    selected: dict[str, list[RegionSettings]] = {}
    for env_name in sorted(inventory.environments):
        codes = sorted(inventory.environments[env_name].regions)
        if wanted is not None and not wanted & set(codes):
            continue
        selected[env_name] = [
            inventory.settings(env_name, code, mode, websocket_enabled)
            if wanted is None or code in wanted
            else recorded.get((env_name, code)) or inventory.settings(env_name, code)
            for code in codes
        ]
    return selected
