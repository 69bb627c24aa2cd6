"""What each mode renders, the rollback switch, determinism, and all-or-nothing writes."""

from __future__ import annotations

import difflib
import re
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import render as render_module
from orchestrator.errors import RenderError
from orchestrator.inventory import load_inventory
from orchestrator.render import render_region, select_regions
from orchestrator.schema_check import schema_problems
from orchestrator.yaml_loader import load_yaml_text
from tests.orchestrator.conftest import SHOWCASE_INVENTORY, copy_showcase, write_inventory


def rendered_files(mode: str, websocket_enabled: bool = True, region: str = "ord") -> dict[str, str]:
    inventory = load_inventory(SHOWCASE_INVENTORY)
    (settings,) = [
        s for s in select_regions(inventory, [region], mode, websocket_enabled) if s.environment.name == "production"
    ]
    return render_region(inventory, settings).files


def navigator(files: dict[str, str]) -> dict[str, Any]:
    return load_yaml_text(files["navigator.yml"], "navigator.yml").data


def test_action_cable_mode_runs_puma_and_redis_behind_a_websocket_proxy():
    files = rendered_files("action_cable")
    config = navigator(files)
    assert config["cable"] == {"enabled": False}
    processes = {p["name"]: p for p in config["managed_processes"]}
    assert processes["action-cable"]["args"] == ["exec", "puma", "-p", "28080", "cable/config.ru"]
    assert processes["redis"]["args"] == ["/etc/redis/redis.conf"]
    assert config["routes"]["reverse_proxies"] == [
        {"name": "cable", "path": r"^(/showcase/regions/ord/cable)$", "target": "http://localhost:28080$1", "websocket": True}
    ]
    assert config["applications"]["env"]["REDIS_URL"] == "redis://localhost:6379/1"
    assert "redis-server" in files["Dockerfile"]
    assert load_yaml_text(files["rails/config/cable.yml"], "cable.yml").data["production"]["adapter"] == "redis"
    assert sorted(files) == ["Dockerfile", "navigator.yml", "rails/config/cable.yml"]


def test_anycable_mode_runs_a_pinned_anycable_go_with_the_plan_flags():
    files = rendered_files("anycable")
    config = navigator(files)
    assert config["cable"] == {"enabled": False}
    (process,) = config["managed_processes"]
    assert process["name"] == "anycable"
    assert process["command"] == "/bin/sh"
    script, argv0, *flags = process["args"][1:]
    assert script == 'ANYCABLE_SECRET="$CABLE_SIGNING_SECRET" exec anycable-go "$@"'
    assert argv0 == "anycable-go"
    assert flags == [
        "--port", "28080", "--path", "/showcase/regions/ord/cable", "--broadcast_adapter", "http",
        "--http_broadcast_port", "28081", "--http_broadcast_path", "/_broadcast", "--norpc", "--noauth",
    ]
    assert config["routes"]["reverse_proxies"][0]["target"] == "http://localhost:28080$1"
    assert config["applications"]["env"]["ANYCABLE_HTTP_BROADCAST_URL"] == "http://localhost:28081/_broadcast"
    dockerfile = files["Dockerfile"]
    assert "ARG ANYCABLE_VERSION=1.5.1" in dockerfile
    assert 'sha256sum --check --strict' in dockerfile
    assert "redis" not in dockerfile
    anycable = load_yaml_text(files["rails/config/anycable.yml"], "anycable.yml").data["production"]
    assert anycable["broadcast_adapter"] == "http"
    assert load_yaml_text(files["rails/config/cable.yml"], "cable.yml").data["production"] == {"adapter": "any_cable"}


def test_anycable_public_streams_flag_follows_the_inventory(tmp_path):
    inventory_path = copy_showcase(tmp_path)
    inventory_path.write_text(
        inventory_path.read_text().replace("public_streams: false", "public_streams: true"), encoding="utf-8"
    )
    inventory = load_inventory(inventory_path)
    (settings,) = [s for s in select_regions(inventory, ["ord"], "anycable") if s.environment.name == "production"]
    (process,) = navigator(render_region(inventory, settings).files)["managed_processes"]
    assert process["command"] == "anycable-go"
    assert "--public_streams" in process["args"]


def test_integrated_mode_serves_the_cable_from_the_front_process():
    files = rendered_files("integrated")
    config = navigator(files)
    assert config["cable"] == {"enabled": True, "path": "/showcase/regions/ord/cable", "broadcast_path": "/_broadcast"}
    assert "managed_processes" not in config
    assert "reverse_proxies" not in config["routes"]
    env = config["applications"]["env"]
    assert env["RAILS_CABLE_PATH"] == "/showcase/regions/ord/cable"
    assert env["TURBO_CABLE_BROADCAST_URL"] == "http://localhost:9999/_broadcast"
    assert "redis" not in files["Dockerfile"]
    cable = load_yaml_text(files["rails/config/cable.yml"], "cable.yml").data["production"]
    assert cable["adapter"] == "http_broadcast"
    assert all("async" not in text for text in files.values())
    adapter = files["rails/lib/action_cable/subscription_adapter/http_broadcast.rb"]
    assert "class HttpBroadcast < Base" in adapter
    hub = load_yaml_text(files["hub.yml"], "hub.yml").data
    assert schema_problems("hub.schema.json", hub) == []
    assert hub["channels"]["ConfigUpdateChannel"] == {"stream": "config_update_{database}_{user_id}", "signed": True}
    assert hub["signing_secret_env"] == "CABLE_SIGNING_SECRET"


def test_tenants_of_the_region_and_replays_to_the_others():
    config = navigator(rendered_files("integrated", region="nrt"))
    tenants = config["applications"]["tenants"]
    assert tenants[:2] == [
        {"path": "/showcase/", "var": {"database": "index"}},
        {"path": "/showcase/regions/nrt/demo/", "var": {"database": "demo"}},
    ]
    assert len(tenants) == 2 + 5
    replays = config["routes"]["fly"]["replay"]
    assert {r["region"] for r in replays} == {"ams", "dfw", "ewr", "iad", "ord", "sjc", "syd"}
    assert {"path": "^/showcase/2026/clearwater/", "region": "dfw", "status": 307} in replays
    assert config["applications"]["pools"]["max_size"] == 8


@pytest.mark.parametrize("mode", ["action_cable", "anycable", "integrated"])
def test_websocket_off_changes_only_the_websocket_lines(mode):
    on = rendered_files(mode, websocket_enabled=True)
    off = rendered_files(mode, websocket_enabled=False)
    assert {name for name in on if on[name] != off[name]} == {"navigator.yml"}
    diff = [
        line for line in difflib.unified_diff(on["navigator.yml"].splitlines(), off["navigator.yml"].splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    added = [line[1:] for line in diff if line.startswith("+")]
    removed = [line[1:] for line in diff if line.startswith("-")]
    config_off = navigator(off)
    assert config_off["cable"]["enabled"] is False
    assert "managed_processes" not in config_off
    assert "reverse_proxies" not in config_off.get("routes", {})
    if mode == "integrated":
        assert (removed, added) == (["  enabled: true"], ["  enabled: false"])
    else:
        assert added == []
        assert removed[0] == "    reverse_proxies:" or removed[0] == "  reverse_proxies:"
        assert "managed_processes:" in removed
        # Only whole proxy and process blocks go: every line after the cable is unchanged otherwise.
        assert len(removed) == len(on["navigator.yml"].splitlines()) - len(off["navigator.yml"].splitlines())


def test_region_override_switches_one_region_off(tmp_path, orchestrate):
    inventory = write_inventory(tmp_path, replace=("      enabled: true\ntenants", "      enabled: false\ntenants"))
    out = tmp_path / "out"
    assert orchestrate("render", inventory, "--out", out).code == 0
    enabled = {
        region: load_yaml_text((out / "production" / region / "navigator.yml").read_text(), "n").data["cable"]["enabled"]
        for region in ("ams", "dfw", "iad", "ord")
    }
    assert enabled == {"ams": True, "dfw": True, "iad": True, "ord": False}


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_rendering_is_byte_identical_run_after_run(orchestrate, tmp_path):
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", tmp_path / "a").code == 0
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", tmp_path / "b").code == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert len(tree(tmp_path / "a")) == 9 * 5


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


def test_output_does_not_depend_on_the_order_of_keys_in_the_input(orchestrate, tmp_path):
    original = copy_showcase(tmp_path)
    data = load_yaml_text(original.read_text(), "showcase.yml").data
    shuffled_dir = tmp_path / "shuffled"
    shuffled_dir.mkdir()
    shuffled = copy_showcase(shuffled_dir)
    rng = random.Random(20261128)
    shuffled.write_text(yaml.safe_dump(_shuffled(data, rng), sort_keys=False), encoding="utf-8")
    showcases = load_yaml_text((tmp_path / "showcases.yml").read_text(), "showcases.yml").data
    (shuffled_dir / "showcases.yml").write_text(yaml.safe_dump(_shuffled(showcases, rng), sort_keys=False), encoding="utf-8")
    assert shuffled.read_text() != original.read_text()
    assert orchestrate("render", original, "--out", tmp_path / "a").code == 0
    assert orchestrate("render", shuffled, "--out", tmp_path / "b").code == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_secret_values_never_reach_rendered_files(orchestrate, tmp_path, monkeypatch):
    monkeypatch.setenv("CABLE_SIGNING_SECRET", "s3cr3t-signing-value")
    monkeypatch.setenv("CABLE_BROADCAST_KEY", "s3cr3t-broadcast-key")
    inventory = copy_showcase(tmp_path)
    inventory.write_text(
        inventory.read_text().replace("  signing_secret_env: CABLE_SIGNING_SECRET\n",
                                      "  signing_secret_env: CABLE_SIGNING_SECRET\n  broadcast_key_env: CABLE_BROADCAST_KEY\n"),
        encoding="utf-8",
    )
    for mode in ("action_cable", "anycable", "integrated"):
        result = orchestrate("render", inventory, "--out", tmp_path / mode, "--mode", mode)
        assert result.code == 0
        text = b"".join(tree(tmp_path / mode).values()) + (result.out + result.err).encode()
        assert b"s3cr3t" not in text
        if mode != "action_cable":
            assert b"CABLE_BROADCAST_KEY" in text


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("server:\n  bot_detection: true\n", "server.bot_detection"),
        ("server:\n  websocket:\n    enabled: true\n", "server.websocket"),
        ("applications:\n  tenants:\n    - path: /x/\n      memory_limit: 1G\n", "applications.tenants[0].memory_limit"),
    ],
)
def test_keys_navigator_silently_ignores_are_render_errors(extra, path):
    expected = f"production/ord/navigator.yml: does not match navigator.schema.json: {path}: unknown key"
    with pytest.raises(RenderError, match=re.escape(expected)):
        render_module._check("production/ord/navigator.yml", "navigator.yml", extra)


def test_a_failing_region_writes_nothing(orchestrate, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", out, "--region", "ams").code == 0
    before = tree(out)
    real_render = render_module.render_template

    def broken_for_syd(name: str, context: dict[str, Any]) -> str:
        text = real_render(name, context)
        if name == "navigator.yml.j2" and context["region"].code == "syd":
            text += "maintenance:\n  enabled: maybe\n"
        return text

    monkeypatch.setattr(render_module, "render_template", broken_for_syd)
    result = orchestrate("render", SHOWCASE_INVENTORY, "--out", out)
    assert result.code == 1
    assert "render failed, nothing written: production/syd/navigator.yml: does not match navigator.schema.json: maintenance.enabled: expected boolean, got 'maybe'" in result.err
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_rerender_replaces_selected_regions_and_keeps_the_rest(orchestrate, tmp_path):
    out = tmp_path / "out"
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", out).code == 0
    (out / "production" / "ord" / "stale.txt").write_text("left over")
    (out / "notes.txt").write_text("operator's notes")
    ams_before = (out / "production" / "ams" / "navigator.yml").read_bytes()
    result = orchestrate("render", SHOWCASE_INVENTORY, "--out", out, "--region", "ord", "--websocket", "off")
    assert result.code == 0
    assert not (out / "production" / "ord" / "stale.txt").exists()
    assert (out / "notes.txt").read_text() == "operator's notes"
    assert (out / "production" / "ams" / "navigator.yml").read_bytes() == ams_before
    ord_config = load_yaml_text((out / "production" / "ord" / "navigator.yml").read_text(), "n").data
    assert ord_config["cable"]["enabled"] is False
