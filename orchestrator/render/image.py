"""What one Fly app's image holds: its Dockerfile and fly.toml, the scripts that choose and refresh the region's configuration, and the tool copy that renders it again at run time.

One image runs every region of the app. Its files live under the inventory's
`image.config_dir` (COPY'd from `<deploy_dir>/<environment>/navigator/`):

    regions/<r>/boot.yml, navigator.yml, render.json (+ hub.yml)   per region
    bin/start        the entry point: checks FLY_REGION, starts Navigator on the region's boot.yml
    bin/refresh      renders the region's navigator.yml again from the synced tenant list
    bin/cgi-refresh  runs an app CGI script, then bin/refresh
    image.json       which inventory and environment the refresh renders
    inventory/       the inventory and its tenant list
    tool/            this program's own modules, schemas and templates (and nats-py, when a hub uses NATS)
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from collections.abc import Iterable
from typing import Any

from orchestrator.model import Broker, Environment, Inventory, Mode, RegionSettings
from orchestrator.errors import RenderError
from orchestrator.render import modes
from orchestrator.resources import data_dir

# Debian packages the refresh needs: the image's own Python runs the tool copy.
REFRESH_PACKAGES = ("python3", "python3-jinja2", "python3-yaml")
IMAGE_MANIFEST = "image.json"
REGION_SETTINGS = "render.json"


def image_context(inventory: Inventory, environment: Environment, region_modes: Iterable[Mode]) -> dict[str, Any]:
    used = sorted(set(region_modes))
    pools = inventory.navigator.get("applications", {}).get("pools", {})
    image = inventory.image
    return {
        "inventory": inventory.name,
        "app": inventory.app,
        "environment": environment,
        "image": image,
        "modes": used,
        "deploy_path": f"{image.deploy_dir}/{environment.name}",
        "packages": sorted({*image.packages, *REFRESH_PACKAGES, *modes.image_packages(
            used, hub_brokers(inventory, environment, used), anycable_brokers(inventory, environment, used))}),
        "anycable_image": inventory.anycable.image if "anycable" in used else None,
        "pools_user": pools.get("user"),
        "pools_group": pools.get("group") or pools.get("user"),
        "health_path": inventory.navigator.get("server", {}).get("health_check", {}).get("path"),
        "regions": sorted(environment.regions),
    }


def hub_brokers(inventory: Inventory, environment: Environment, region_modes: Iterable[Mode]) -> list[Broker]:
    """The brokers the environment's hubs use, when its image holds the hub mode."""
    if "hub" not in set(region_modes):
        return []
    return [broker for code in environment.regions if (broker := inventory.broker_for(code)) is not None]


def anycable_brokers(inventory: Inventory, environment: Environment, region_modes: Iterable[Mode]) -> list[Broker]:
    """The brokers the environment's anycable-go share broadcasts through, when its image holds the anycable mode."""
    if "anycable" not in set(region_modes):
        return []
    return [broker for code in environment.regions if (broker := inventory.broker_for(code, "anycable")) is not None]


def image_manifest(inventory: Inventory, environment: Environment) -> str:
    """What bin/refresh renders: which inventory and environment, and where the app syncs the tenant list to."""
    manifest = {
        "environment": environment.name,
        "fly_app": environment.fly_app,
        "inventory": f"inventory/{inventory.name}",
        "tenant_list": None if inventory.tenant_list is None else f"inventory/{inventory.tenant_list.name}",
        "synced_tenant_list": inventory.tenants.runtime_file,
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def region_settings(settings: RegionSettings) -> str:
    """The mode and switch a region was rendered with; the refresh keeps them (a rollback stays rolled back)."""
    recorded = {
        "environment": settings.environment.name,
        "region": settings.region.code,
        "mode": settings.mode,
        "websocket_enabled": settings.websocket_enabled,
    }
    return json.dumps(recorded, indent=2, sort_keys=True) + "\n"


def shipped_inventory(inventory: Inventory) -> dict[str, str]:
    files = {f"inventory/{inventory.name}": inventory.source_text}
    if inventory.tenant_list is not None:
        files[f"inventory/{inventory.tenant_list.name}"] = inventory.tenant_list.text
    return files


@cache
def tool_files() -> dict[str, str]:
    """This program's modules, schemas and templates, laid out so that `python3 -m orchestrator` runs from tool/."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sources = {
        "orchestrator": package_dir,
        "hub": os.path.join(os.path.dirname(package_dir), "hub"),
        "orchestrator/schema": data_dir("schema"),
        "orchestrator/templates": data_dir("templates"),
    }
    files = {}
    for target, source in sources.items():
        suffix = (".py",) if target in ("orchestrator", "hub") else (".json", ".j2")
        files.update(_tree(f"tool/{target}", source, suffix))
    return files


def broker_client_files(brokers: Iterable[Broker]) -> dict[str, str]:
    """nats-py, which Debian does not package, carried in tool/ beside the hub when a hub uses NATS."""
    if not any(broker.kind == "nats" for broker in brokers):
        return {}
    found = importlib.util.find_spec("nats")
    if found is None or found.origin is None:
        raise RenderError("a hub broker is nats, but nats-py is not installed here to carry into the image: "
                          "install cable-orchestrator[broker]")
    return _tree("tool/nats", os.path.dirname(found.origin), (".py",))


def _tree(target: str, source: str, suffixes: tuple[str, ...]) -> dict[str, str]:
    # The image only renders its region again; the rollout, its targets and the preflight run on the operator's side.
    left_out = ("__pycache__", "schema", "templates", "rollout", "targets", "preflight")
    files = {}
    for directory, subdirectories, names in os.walk(source):
        subdirectories[:] = sorted(d for d in subdirectories if d not in left_out)
        for name in sorted(names):
            if name.endswith(suffixes):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, source).replace(os.sep, "/")
                with open(path, encoding="utf-8") as handle:
                    files[f"{target}/{relative}"] = handle.read()
    return files
