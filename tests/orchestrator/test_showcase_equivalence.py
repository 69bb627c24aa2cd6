"""The rendered integrated-mode configuration of `ord` against Showcase's own (fixtures/showcase/navigator.ord.yml).

Showcase's generator and ours must agree on everything Navigator acts on. Every
difference that remains is listed in INTENDED_DIFFERENCES with its reason; the
test applies exactly those to Showcase's file and then requires equality, so
a new difference, or a listed one that no longer exists, fails.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.yaml_loader import load_yaml_text
from tests.orchestrator.conftest import region_config, rendered

FIXTURE = Path(__file__).parent / "fixtures" / "showcase" / "navigator.ord.yml"
IMAGE_CONFIG = "/etc/navigator/navigator.yml"

Change = Callable[[dict[str, Any]], None]


def _drop(*path: str) -> Change:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return change


def _drop_from_tenants(key: str) -> Change:
    def change(config: dict[str, Any]) -> None:
        for tenant in config["applications"]["tenants"]:
            tenant.pop(key, None)

    return change


def _add_adapter_env(config: dict[str, Any]) -> None:
    config["applications"]["env"].update(
        {"CABLE_ADAPTER": "http_broadcast", "CABLE_URL": "http://localhost:9999/_broadcast"}
    )


def _resume_renders_our_configuration(config: dict[str, Any]) -> None:
    (initialisation,) = config["hooks"]["server"]["resume"]
    assert initialisation["reload_config"] == "config/navigator.yml"
    sync = {key: value for key, value in initialisation.items() if key != "reload_config"}
    refresh = {"command": "/etc/navigator/bin/refresh", "args": [], "timeout": "1m", "reload_config": IMAGE_CONFIG}
    config["hooks"]["server"]["resume"] = [sync, refresh]


def _update_config_renders_our_configuration(config: dict[str, Any]) -> None:
    (script,) = config["server"]["cgi_scripts"]
    assert script["reload_config"] == "config/navigator.yml"
    script["env"]["ORCHESTRATE_CGI_SCRIPT"] = script["script"]
    script["script"] = "/etc/navigator/bin/cgi-refresh"
    script["reload_config"] = IMAGE_CONFIG


def _drop_empty_lists(config: dict[str, Any]) -> None:
    if config["managed_processes"] == []:
        del config["managed_processes"]
    if config["hooks"]["tenant"]["start"] == []:
        del config["hooks"]["tenant"]["start"]


INTENDED_DIFFERENCES: list[tuple[str, Change]] = [
    ("Navigator ignores server.bot_detection (not copied into its runtime config)", _drop("server", "bot_detection")),
    ("Navigator ignores applications.framework; it starts `ruby bin/rails server -p PORT` in the tenant's root by itself",
     _drop("applications", "framework")),
    ("Navigator ignores applications.startup_timeout", _drop("applications", "startup_timeout")),
    ("Navigator forces applications.track_websockets: false back to true", _drop("applications", "track_websockets")),
    ("Navigator ignores a tenant's bot_detection", _drop_from_tenants("bot_detection")),
    ("Navigator ignores hooks.server.stop (its idle hook is the same command)", _drop("hooks", "server", "stop")),
    ("empty lists say nothing: no managed processes, no tenant start hooks", _drop_empty_lists),
    ("the generated Action Cable adapter reads CABLE_ADAPTER and CABLE_URL (Showcase's turbo_cable gem keeps "
     "reading TURBO_CABLE_BROADCAST_URL)", _add_adapter_env),
    ("on resume the app's sync runs, then our refresh renders this region again from the synced tenant list; "
     "Showcase's own generator wrote config/navigator.yml, which the image no longer reads", _resume_renders_our_configuration),
    ("update_config runs the app's script, then our refresh, through a wrapper", _update_config_renders_our_configuration),
]


ALTERNATION = re.compile(r"\(\?:([^()]*)\)")


def _canonical_pattern(pattern: str) -> str:
    """The same regex with every `(?:a|b|c)` group's alternatives unescaped and sorted, so order and `\\-` do not matter."""

    def sort(match: re.Match[str]) -> str:
        alternatives = sorted(alternative.replace("\\", "") for alternative in match.group(1).split("|"))
        return "(?:" + "|".join(alternatives) + ")"

    return ALTERNATION.sub(sort, pattern)


def _canonical(config: dict[str, Any]) -> dict[str, Any]:
    """Rule lists as sets where Navigator's outcome does not depend on their order."""
    config = copy.deepcopy(config)
    for hooks in config.get("hooks", {}).values():
        for entries in hooks.values():
            for hook in entries:
                hook.setdefault("args", [])
    auth = config["auth"]
    auth["auth_patterns"] = sorted(
        (_canonical_pattern(rule["pattern"]), rule["action"]) for rule in auth["auth_patterns"]
    )
    replays = config["routes"]["fly"]["replay"]
    # Other-app rules (PDFs) must stay first: a PDF under another region's path goes to the PDF app.
    leading = [rule for rule in replays if "app" in rule]
    assert replays[: len(leading)] == leading
    config["routes"]["fly"]["replay"] = leading + sorted(
        (_canonical_pattern(rule["path"]), rule["region"], rule["status"]) for rule in replays if "app" not in rule
    )
    config["applications"]["tenants"] = {tenant["path"]: tenant for tenant in config["applications"]["tenants"]}
    return config


def test_ord_renders_showcase_s_own_configuration_except_the_listed_differences():
    showcase = load_yaml_text(FIXTURE.read_text(encoding="utf-8"), str(FIXTURE)).data
    for _reason, change in INTENDED_DIFFERENCES:
        change(showcase)
    ours = region_config(rendered(mode="integrated"))
    assert _canonical(ours)["applications"]["tenants"] == _canonical(showcase)["applications"]["tenants"]
    assert _canonical(ours) == _canonical(showcase)


def test_tenants_of_ord_carry_showcase_s_environment():
    tenants = {t["path"]: t for t in region_config(rendered(mode="integrated"))["applications"]["tenants"]}
    assert tenants["/showcase/2025/nashville/fall-ball/"]["env"] == {
        "RAILS_APP_OWNER": "Nashville",
        "RAILS_APP_SCOPE": "2025/nashville/fall-ball",
        "SHOWCASE_LOGO": "nashville.jpg",
    }
    demo = tenants["/showcase/regions/ord/demo/"]
    assert demo["env"]["DATABASE_URL"] == "sqlite3:///demo/db/demo.sqlite3"
    assert demo["root"] == "/rails/"


def test_a_non_english_tenant_gets_its_locale_as_showcase_writes_it():
    tenants = {t["path"]: t for t in region_config(rendered(mode="integrated"), "syd")["applications"]["tenants"]}
    assert tenants["/showcase/2025/adelaide/northside/"]["env"]["RAILS_LOCALE"] == "en_AU"


def test_the_hub_mode_differs_from_the_integrated_one_in_the_cable_lines_only():
    """Everything Showcase's configuration has stays; the hub takes the cable path and the broadcasts."""
    integrated = region_config(rendered(mode="integrated"))
    hub = region_config(rendered(mode="hub"))
    expected = copy.deepcopy(integrated)
    expected["cable"] = {"enabled": False}  # else Navigator's own cable answers the path before any proxy
    hub_broadcasts = "http://localhost:28080/_broadcast"  # the hub's loopback port, never through Navigator
    expected["applications"]["env"].update({"CABLE_URL": hub_broadcasts, "TURBO_CABLE_BROADCAST_URL": hub_broadcasts})
    (process,) = hub["managed_processes"]
    assert process["name"] == "cable-hub" and process["args"][-2:] == ["--hub-config", "/etc/navigator/regions/ord/hub.yml"]
    expected["managed_processes"] = [process]
    (proxy,) = [p for p in hub["routes"]["reverse_proxies"] if p.get("name") == "cable"]
    assert proxy == {"name": "cable", "path": "^(/showcase/regions/ord/cable)$", "target": "http://localhost:28080$1",
                     "websocket": True}
    expected["routes"]["reverse_proxies"] = [*integrated["routes"]["reverse_proxies"], proxy]
    assert hub == expected
