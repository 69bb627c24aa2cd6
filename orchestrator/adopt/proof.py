"""The proof: each region rendered from the new inventory, in the mode the app runs today, and compared with
the original as Navigator would load both; every difference is either explained by a rule below or listed."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.adopt.loaded import differences, loaded, pruned
from orchestrator.adopt.sources import RegionFile
from orchestrator.adopt.websocket import Recognised
from orchestrator.inventory import GENERATED_ENV
from orchestrator.model import Inventory
from orchestrator.render.navigator_config import CGI_SCRIPT_VARIABLE, REFRESH_COMMAND, full_config
from orchestrator.schema_check import format_path

ENVIRONMENT = "production"


@dataclass(frozen=True)
class RegionProof:
    region: str
    compared: bool  # False: no file of this region was given, so it was rendered only
    explained: tuple[tuple[str, int], ...]  # reason, how many places
    unexplained: tuple[str, ...]


Rule = Callable[[dict[str, Any], dict[str, Any], Inventory], int]


def prove(inventory: Inventory, files: list[RegionFile], current: dict[str, Recognised]) -> list[RegionProof]:
    by_region = {file.region: file for file in files}
    proofs = []
    for code in inventory.environments[ENVIRONMENT].regions:
        today = current.get(code) or next(iter(current.values()))
        settings = inventory.settings(ENVIRONMENT, code, today.mode, today.enabled)
        ours = loaded(full_config(inventory, settings))
        if code not in by_region:
            proofs.append(RegionProof(code, False, (), ()))
            continue
        original = loaded(by_region[code].config)
        explained = {reason: places for reason, rule in RULES if (places := rule(original, ours, inventory))}
        left = [f"{format_path(path)}: original {_short(mine)}, rendered {_short(theirs)}"
                for path, mine, theirs in differences(pruned(original), pruned(ours))]
        proofs.append(RegionProof(code, True, tuple(sorted(explained.items())), tuple(left)))
    return proofs


def _short(value: Any) -> str:
    text = "nothing" if value is None else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _adapter_settings(original: dict[str, Any], ours: dict[str, Any], _: Inventory) -> int:
    places = 0
    originals = original.get("applications", {}).get("tenants", {})
    for path, tenant in ours.get("applications", {}).get("tenants", {}).items():
        before = originals.get(path, {}).get("env", {})
        for name in GENERATED_ENV:
            if name in tenant.get("env", {}) and name not in before:
                del tenant["env"][name]
                places += 1
    return places


def _refresh_on_resume(original: dict[str, Any], ours: dict[str, Any], inventory: Inventory) -> int:
    resume = ours.get("hooks", {}).get("server", {}).get("resume", [])
    if not resume or resume[-1]["command"] != f"{inventory.image.config_dir}/{REFRESH_COMMAND}":
        return 0
    resume.pop()
    if not resume:
        del ours["hooks"]["server"]["resume"]
    for hook in original.get("hooks", {}).get("server", {}).get("resume", []):
        hook.pop("reload_config", None)
    return 1


def _refreshing_cgi(original: dict[str, Any], ours: dict[str, Any], _: Inventory) -> int:
    places = 0
    for script in ours.get("server", {}).get("cgi_scripts", []):
        env = script.get("env", {})
        if CGI_SCRIPT_VARIABLE in env:
            script["script"] = env.pop(CGI_SCRIPT_VARIABLE)
            script.pop("reload_config")
            if not env:
                del script["env"]
            places += 1
    for script in original.get("server", {}).get("cgi_scripts", []):
        script.pop("reload_config", None)
    return places


def _mode_processes(original: dict[str, Any], ours: dict[str, Any], _: Inventory) -> int:
    """Redis in the foreground and the cable server's adapter settings: the generator's, for Navigator's sake."""
    places = 0
    mine = original.get("managed_processes", {})
    for name, process in ours.get("managed_processes", {}).items():
        before = mine.get(name)
        if before is None or before == process:
            continue
        after = copy.deepcopy(process)
        if after.get("args", [])[-2:] == ["--daemonize", "no"]:
            after["args"] = after["args"][:-2]
        for key in GENERATED_ENV:
            if key not in before.get("env", {}):
                after.get("env", {}).pop(key, None)
        if not after.get("env"):
            after.pop("env", None)
        if after == before:
            ours["managed_processes"][name] = before
            places += 1
    return places


def _cable_proxy(original: dict[str, Any], ours: dict[str, Any], _: Inventory) -> int:
    """The cable route as the generator writes it (the cable path alone, after the app's own routes), where one
    route of the original takes that path to the same server with nothing else of its own (no headers), and no
    other route matches the cable path, so that where the route stands changes nothing."""
    mine = original.get("routes", {}).get("reverse_proxies", [])
    theirs = ours.get("routes", {}).get("reverse_proxies", [])
    cable = [p for p in theirs if p.get("name") == "cable"]
    if len(cable) != 1:
        return 0
    path = cable[0]["path"][2:-2].replace("\\", "")  # ^(/literal)$
    server = cable[0]["target"].removesuffix("$1")
    before = [p for p in mine if p.get("websocket") and str(p.get("target", "")).startswith(server)
              and re.search(str(p.get("path", "^$")), path)]
    if len(before) != 1 or set(before[0]) - {"name", "path", "target", "websocket"}:
        return 0
    rest = [p for p in mine if p is not before[0]] + [p for p in theirs if p is not cable[0]]
    if any(re.search(str(p.get("path", "^$")), path) for p in rest):
        return 0
    mine.remove(before[0])
    theirs.remove(cable[0])
    return 1


# Differences the generator makes on purpose, each with its reason; the rule takes them out of both sides.
RULES: list[tuple[str, Rule]] = [
    ("the generated Rails cable settings (CABLE_ADAPTER, CABLE_URL, RAILS_CABLE_PATH, TURBO_CABLE_BROADCAST_URL) in "
     "each tenant's environment, read by the generated adapter", _adapter_settings),
    ("on resume the app's sync runs, then the refresh renders this region again from the synced tenant list",
     _refresh_on_resume),
    ("a CGI script that reloaded the configuration runs through the refresh wrapper, which renders it again",
     _refreshing_cgi),
    ("the WebSocket mode's processes as the generator writes them (Redis in the foreground, so Navigator can stop "
     "it; the cable server's adapter settings)", _mode_processes),
    ("the cable route as the generator writes it: the cable path alone, to the same server, after the app's own "
     "routes", _cable_proxy),
]
