"""`orchestrate refresh`, run inside the image by Navigator's hooks: render this region's navigator.yml again.

The app's own sync has just fetched the current tenant list (the inventory's
`tenants.runtime_file`); the region is rendered from the inventory shipped in
the image and that list, with the mode and WebSocket switch recorded when the
image was built, and written to the active configuration only when it changed
(Navigator reloads a hook's `reload_config` file when it was modified).

Navigator is never left without a configuration, and a working one is never
replaced by a broken one: when the synced list cannot be used, a first refresh
installs the configuration baked into the image; later ones keep what runs.

The WebSocket switch on the volume: a machine's root file system is reset to
the image on every restart, only the volume (`image.data_dir`) persists. When
`<data_dir>/cable-orchestrator/websocket` exists, it holds "on" or "off" and
overrides the switch recorded in the region's render.json; anything else is an
error (the running configuration is kept). The quick rollback is then: write
"off" there, run bin/refresh, then `navigator -s reload` (a restart where the
side processes change); every later refresh, at boot too, keeps it off.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrator.atomic import write_file_atomic
from orchestrator.errors import InputError, RenderError
from orchestrator.inventory import load_inventory
from orchestrator.render.files import navigator_yml, recorded_settings
from orchestrator.render.image import IMAGE_MANIFEST, REGION_SETTINGS

EXIT_REFRESHED = 0
EXIT_KEPT = 1
# Relative to the inventory's image.data_dir (the machine's volume).
SWITCH_FILE = "cable-orchestrator/websocket"
_SWITCH_VALUES = {"on": True, "off": False}


def refresh(config_dir: Path, region: str) -> int:
    active = config_dir / "navigator.yml"
    baked = config_dir / "regions" / region / "navigator.yml"
    try:
        text = _render(config_dir, region)
    except (InputError, RenderError, OSError, ValueError, KeyError) as error:
        print(f"refresh: cannot render region {region}: {_describe(error)}", file=sys.stderr)
        if active.exists():
            print(f"refresh: keeping {active} as it is", file=sys.stderr)
            return EXIT_KEPT
        if not baked.is_file():
            print(f"refresh: {baked} does not exist either: {region} is not a region of this image", file=sys.stderr)
            return EXIT_KEPT
        write_file_atomic(active, baked.read_text(encoding="utf-8"))
        print(f"refresh: installed the image's configuration {baked} as {active}", file=sys.stderr)
        return EXIT_REFRESHED
    if active.exists() and active.read_text(encoding="utf-8") == text:
        print(f"refresh: {active} is up to date")
        return EXIT_REFRESHED
    write_file_atomic(active, text)
    print(f"refresh: wrote {active}")
    return EXIT_REFRESHED


def _render(config_dir: Path, region: str) -> str:
    manifest = json.loads((config_dir / IMAGE_MANIFEST).read_text(encoding="utf-8"))
    inventory_path = config_dir / manifest["inventory"]
    tenants = _tenant_list(config_dir, manifest)
    inventory = load_inventory(inventory_path, tenants_file=tenants)
    settings_path = config_dir / "regions" / region / REGION_SETTINGS
    settings = recorded_settings(
        settings_path.read_text(encoding="utf-8"), str(settings_path), inventory, manifest["environment"]
    )
    switch = volume_switch(Path(inventory.image.data_dir))
    if switch is not None:
        settings = inventory.settings(manifest["environment"], region, settings.mode, switch)
        print(f"refresh: {region}: websocket {'on' if switch else 'off'} from "
              f"{Path(inventory.image.data_dir) / SWITCH_FILE}")
    text = navigator_yml(inventory, settings)
    if tenants is not None:
        print(f"refresh: {region}: {len(inventory.tenants_in(region))} tenants from {tenants}")
    return text


def volume_switch(data_dir: Path) -> bool | None:
    """The switch on the volume: True ("on"), False ("off"), None when the file does not exist; InputError otherwise."""
    path = data_dir / SWITCH_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    value = text.strip()
    if value not in _SWITCH_VALUES:
        raise InputError([f"{path}: holds {value[:40]!r}, not on or off"])
    return _SWITCH_VALUES[value]


def _tenant_list(config_dir: Path, manifest: dict[str, str | None]) -> Path | None:
    """The tenant list the app synced to the machine, else the one shipped in the image (None: inline tenants)."""
    synced = manifest["synced_tenant_list"]
    if synced is not None and Path(synced).is_file():
        return Path(synced)
    shipped = manifest["tenant_list"]
    return None if shipped is None else config_dir / shipped


def _describe(error: Exception) -> str:
    if isinstance(error, InputError):
        return "; ".join(error.problems)
    return str(error)
