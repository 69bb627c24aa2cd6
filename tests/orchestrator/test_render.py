"""What each mode renders, the rollback switch, one image per app, determinism, and all-or-nothing writes."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import RenderError
from orchestrator.render import files as files_module
from orchestrator.schema_check import in_schema_order
from hub.yaml_loader import load_yaml_text
from tests.orchestrator.conftest import (
    SHOWCASE_INVENTORY,
    TEST_ANYCABLE_IMAGE,
    copy_showcase,
    parsed,
    region_config,
    rendered,
    showcase_with_anycable_image,
    write_inventory,
)

SIGNING_SECRET_GUARD = '"${CABLE_SIGNING_SECRET:?CABLE_SIGNING_SECRET is not set}"'


def test_action_cable_mode_runs_puma_and_redis_with_their_own_environment():
    files = rendered(mode="action_cable")
    config = region_config(files)
    assert config["cable"] == {"enabled": False}
    cable, redis = config["managed_processes"]
    assert (cable["name"], cable["command"], cable["args"]) == (
        "action-cable", "bundle", ["exec", "puma", "-p", "28080", "cable/config.ru"]
    )
    # Navigator never hands applications.env to a managed process: the cable server gets its own.
    assert cable["env"] == {
        "RAILS_ENV": "production",
        "RAILS_RELATIVE_URL_ROOT": "/showcase",
        "RAILS_CABLE_PATH": "/showcase/regions/ord/cable",
        "CABLE_ADAPTER": "redis",
        "CABLE_URL": "redis://localhost:6379/1",
    }
    # Debian's redis.conf daemonizes; Navigator would lose a forked server.
    assert redis == {"name": "redis", "command": "redis-server", "args": ["/etc/redis/redis.conf", "--daemonize", "no"],
                     "auto_restart": True, "start_delay": "1s"}
    assert config["routes"]["reverse_proxies"][-1] == {
        "name": "cable", "path": r"^(/showcase/regions/ord/cable)$", "target": "http://localhost:28080$1", "websocket": True,
    }
    env = config["applications"]["env"]
    assert (env["CABLE_ADAPTER"], env["CABLE_URL"]) == ("redis", "redis://localhost:6379/1")
    assert "redis-server" in dockerfile_packages(files)


def dockerfile_packages(files: dict[str, str]) -> list[str]:
    """The packages the final stage installs."""
    final_stage = files["Dockerfile"].rsplit("\nFROM base\n", 1)[1]
    return re.search(r"apt-get install --no-install-recommends -y ([^&]+) &&", final_stage).group(1).split()


def test_anycable_mode_runs_a_pinned_locked_down_anycable_go(tmp_path):
    files = rendered(showcase_with_anycable_image(tmp_path, ("  public_streams: false\n", "  public_streams: false\n  turbo_streams: true\n")),
                     mode="anycable")
    config = region_config(files)
    assert config["cable"] == {"enabled": False}
    (process,) = config["managed_processes"]
    assert (process["name"], process["command"]) == ("anycable", "/bin/sh")
    dash_c, script, argv0, *flags = process["args"]
    assert (dash_c, argv0) == ("-c", "anycable-go")
    assert script == f'ANYCABLE_SECRET={SIGNING_SECRET_GUARD} exec anycable-go "$@"'
    assert flags == [
        "--presets", "none", "--host", "127.0.0.1", "--port", "28080", "--path", "/showcase/regions/ord/cable",
        "--broadcast_adapter", "http", "--http_broadcast_port", "28081", "--http_broadcast_path", "/_broadcast",
        "--norpc", "--noauth", "--turbo_streams",
    ]
    assert process["env"] == {"ANYCABLE_DISABLE_TELEMETRY": "true"}
    assert config["routes"]["reverse_proxies"][-1]["target"] == "http://localhost:28080$1"
    env = config["applications"]["env"]
    assert (env["CABLE_ADAPTER"], env["CABLE_URL"]) == ("any_cable_http", "http://localhost:28081/_broadcast")
    dockerfile = files["Dockerfile"]
    assert f"FROM {TEST_ANYCABLE_IMAGE} AS anycable\n" in dockerfile
    assert "COPY --from=anycable /usr/local/bin/anycable-go /usr/local/bin/anycable-go\n" in dockerfile
    assert "redis" not in dockerfile
    assert "sha256sum" not in dockerfile and "curl -fsSL" not in dockerfile


def test_anycable_maps_a_broadcast_key_and_public_streams_when_the_inventory_asks(tmp_path):
    inventory = showcase_with_anycable_image(
        tmp_path, ("  public_streams: false\n", "  public_streams: true\n  broadcast_key_env: CABLE_BROADCAST_KEY\n")
    )
    (process,) = region_config(rendered(inventory, mode="anycable"))["managed_processes"]
    assert process["args"][1] == (
        f'ANYCABLE_SECRET={SIGNING_SECRET_GUARD} '
        'ANYCABLE_BROADCAST_KEY="${CABLE_BROADCAST_KEY:?CABLE_BROADCAST_KEY is not set}" exec anycable-go "$@"'
    )
    assert "--public_streams" in process["args"] and "--turbo_streams" not in process["args"]


def test_anycable_routes_cable_ready_streams_only_when_the_inventory_asks(tmp_path):
    # anycable-go v1.5.1 routes CableReady::Stream only with --cable_ready and a secret (cli/cli.go:506-509);
    # it verifies with --secret (ANYCABLE_SECRET) when no --cable_ready_secret is given (streams/config.go:46-52).
    inventory = showcase_with_anycable_image(tmp_path, ("  public_streams: false\n", "  public_streams: false\n  cable_ready: true\n"))
    (process,) = region_config(rendered(inventory, mode="anycable"))["managed_processes"]
    assert "--cable_ready" in process["args"] and "--turbo_streams" not in process["args"]
    assert process["args"][1] == f'ANYCABLE_SECRET={SIGNING_SECRET_GUARD} exec anycable-go "$@"'
    (plain,) = region_config(rendered(showcase_with_anycable_image(tmp_path), mode="anycable"))["managed_processes"]
    assert "--cable_ready" not in plain["args"]


def test_integrated_mode_serves_the_cable_from_navigator():
    files = rendered(mode="integrated")
    config = region_config(files)
    assert config["cable"] == {"enabled": True, "path": "/showcase/regions/ord/cable", "broadcast_path": "/_broadcast"}
    assert "managed_processes" not in config
    assert all(proxy.get("name") != "cable" for proxy in config["routes"]["reverse_proxies"])
    env = config["applications"]["env"]
    assert {name: env[name] for name in ("RAILS_CABLE_PATH", "CABLE_ADAPTER", "CABLE_URL", "TURBO_CABLE_BROADCAST_URL")} == {
        "RAILS_CABLE_PATH": "/showcase/regions/ord/cable",
        "CABLE_ADAPTER": "http_broadcast",
        "CABLE_URL": "http://localhost:9999/_broadcast",
        "TURBO_CABLE_BROADCAST_URL": "http://localhost:9999/_broadcast",
    }
    assert "redis" not in files["Dockerfile"] and "anycable" not in files["Dockerfile"]
    assert parsed(files, "navigator/regions/ord/hub.yml")["signing_secret_env"] == "CABLE_SIGNING_SECRET"


def test_the_rails_files_are_the_same_in_every_mode(tmp_path):
    inventory = showcase_with_anycable_image(tmp_path)
    per_mode = [
        {path: text for path, text in rendered(inventory, mode=mode).items() if path.startswith("rails/")}
        for mode in ("action_cable", "anycable", "integrated")
    ]
    assert per_mode[0] == per_mode[1] == per_mode[2]
    cable = parsed(per_mode[0], "rails/config/cable.yml")
    assert cable["production"] == {
        "adapter": '<%= ENV.fetch("CABLE_ADAPTER", "http_broadcast") %>',
        "url": '<%= ENV.fetch("CABLE_URL", "http://localhost:9999/_broadcast") %>',
    }


def switched_off(config: dict[str, Any], mode: str) -> dict[str, Any]:
    """What the rollback switch must make of a region's configuration: the WebSocket server and its route go, nothing else."""
    expected = copy.deepcopy(config)
    expected["cable"]["enabled"] = False
    if mode == "action_cable":
        expected["managed_processes"] = [p for p in expected["managed_processes"] if p["name"] == "redis"]
    else:
        expected.pop("managed_processes", None)
    proxies = [p for p in expected["routes"]["reverse_proxies"] if p.get("name") != "cable"]
    expected["routes"]["reverse_proxies"] = proxies
    return expected


@pytest.mark.parametrize("mode", ["action_cable", "anycable", "integrated", "hub"])
def test_websocket_off_removes_only_the_websocket_server_and_its_route(mode, tmp_path):
    inventory = showcase_with_anycable_image(tmp_path)
    on = rendered(inventory, mode=mode, websocket=True)
    off = rendered(inventory, mode=mode, websocket=False)
    changed = {path for path in on.keys() | off.keys() if on.get(path) != off.get(path)}
    # In hub mode the hub's own configuration goes with its process.
    names = ("navigator.yml", "boot.yml", "render.json", *(("hub.yml",) if mode == "hub" else ()))
    assert changed == {f"navigator/regions/{region}/{name}" for region in ("ams", "dfw", "ewr", "iad", "nrt", "ord", "sjc", "syd")
                       for name in names}
    assert all(path in on for path in changed), "off adds nothing"
    config_on, config_off = region_config(on), region_config(off)
    assert config_off == switched_off(config_on, mode)
    # The Rails processes keep broadcasting to the same place: every applications.env line stays.
    assert config_off["applications"]["env"]["RAILS_CABLE_PATH"] == "/showcase/regions/ord/cable"
    # The boot configuration never runs the cable: only its header says which switch it belongs to.
    boot_diff = [pair for pair in zip(on["navigator/regions/ord/boot.yml"].splitlines(),
                                      off["navigator/regions/ord/boot.yml"].splitlines()) if pair[0] != pair[1]]
    assert boot_diff == [(f"# WebSocket mode: {mode}, websocket on.", f"# WebSocket mode: {mode}, websocket off.")]


def test_the_rollback_switch_beats_a_region_s_own_setting(tmp_path, orchestrate):
    inventory = write_inventory(tmp_path)  # regions[3] (ord) says websocket.enabled: true
    out = tmp_path / "out"
    assert orchestrate("render", inventory, "--out", out, "--websocket", "off").code == 0
    assert enabled_by_region(out) == {"ams": False, "dfw": False, "iad": False, "ord": False}


def test_a_region_s_own_setting_beats_the_inventory_default(tmp_path, orchestrate):
    inventory = write_inventory(tmp_path, replace=("      enabled: true\ntenants", "      enabled: false\ntenants"))
    out = tmp_path / "out"
    assert orchestrate("render", inventory, "--out", out).code == 0
    assert enabled_by_region(out) == {"ams": True, "dfw": True, "iad": True, "ord": False}


def enabled_by_region(out: Path) -> dict[str, bool]:
    regions = out / "production" / "navigator" / "regions"
    return {
        path.name: load_yaml_text((path / "navigator.yml").read_text(), "n").data["cable"]["enabled"]
        for path in sorted(regions.iterdir())
    }


def test_a_render_of_one_region_keeps_what_the_others_were_rendered_with(tmp_path, orchestrate):
    inventory = showcase_with_anycable_image(tmp_path)
    out = tmp_path / "out"
    assert orchestrate("render", inventory, "--out", out, "--region", "ord", "--websocket", "off").code == 0
    assert orchestrate("render", inventory, "--out", out, "--region", "dfw", "--mode", "anycable").code == 0
    recorded = {
        path.parent.name: json.loads(path.read_text())
        for path in (out / "production" / "navigator" / "regions").glob("*/render.json")
    }
    assert (recorded["ord"]["mode"], recorded["ord"]["websocket_enabled"]) == ("integrated", False)
    assert (recorded["dfw"]["mode"], recorded["dfw"]["websocket_enabled"]) == ("anycable", True)
    assert (recorded["ams"]["mode"], recorded["ams"]["websocket_enabled"]) == ("integrated", True)
    # The image carries what every region needs: anycable-go for dfw.
    assert "COPY --from=anycable" in (out / "production" / "Dockerfile").read_text()
    # The staging app has neither dfw nor ord: neither render touched it.
    assert not (out / "staging").exists()


def test_a_render_that_changes_one_region_changes_only_that_region_s_files(tmp_path, orchestrate):
    out = tmp_path / "out"
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", out).code == 0
    before = tree(out / "production")
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", out, "--region", "ord", "--websocket", "off").code == 0
    after = tree(out / "production")
    assert {path for path in after if after[path] != before.get(path)} == {
        "navigator/regions/ord/navigator.yml", "navigator/regions/ord/boot.yml", "navigator/regions/ord/render.json",
    }


def test_one_image_holds_every_mode_its_regions_run(tmp_path):
    inventory = showcase_with_anycable_image(
        tmp_path, ("  - {code: dfw}", "  - {code: dfw, websocket: {mode: anycable}}"),
        ("  - {code: ord}", "  - {code: ord, websocket: {mode: action_cable}}"),
    )
    files = rendered(inventory)
    assert "redis-server" in dockerfile_packages(files)
    assert "COPY --from=anycable" in files["Dockerfile"]
    assert "# WebSocket modes in this image: action_cable, anycable, integrated." in files["Dockerfile"]
    modes = {region: json.loads(files[f"navigator/regions/{region}/render.json"])["mode"] for region in ("ams", "dfw", "ord")}
    assert modes == {"ams": "integrated", "dfw": "anycable", "ord": "action_cable"}


def tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_rendering_is_byte_identical_run_after_run(orchestrate, tmp_path):
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", tmp_path / "a").code == 0
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", tmp_path / "b").code == 0
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    configs = [path for path in tree(tmp_path / "a") if path.endswith("/navigator.yml") and "/regions/" in path]
    assert len(configs) == 9


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
    shuffled_dir = tmp_path / "shuffled"
    shuffled_dir.mkdir()
    shuffled = copy_showcase(shuffled_dir)
    rng = random.Random(20261128)
    data = load_yaml_text(original.read_text(), "showcase.yml").data
    # Only mappings whose order carries no meaning: lists (stages, rules) keep their order.
    for section in ("app", "image", "environments", "tenants", "websocket", "modes", "memory_budgets_mb"):
        data[section] = _shuffled(data[section], rng)
    shuffled.write_text(yaml.safe_dump(_shuffled(data, rng), sort_keys=False), encoding="utf-8")
    showcases = load_yaml_text((tmp_path / "showcases.yml").read_text(), "showcases.yml").data
    (shuffled_dir / "showcases.yml").write_text(yaml.safe_dump(_shuffled(showcases, rng), sort_keys=False), encoding="utf-8")
    assert shuffled.read_text() != original.read_text()
    assert orchestrate("render", original, "--out", tmp_path / "a").code == 0
    assert orchestrate("render", shuffled, "--out", tmp_path / "b").code == 0
    # The shipped inventory is the operator's own text; everything generated from it is identical.
    generated = lambda root: {path: data for path, data in tree(root).items() if "/navigator/inventory/" not in path}
    assert generated(tmp_path / "a") == generated(tmp_path / "b")


def test_secret_values_never_reach_rendered_files(orchestrate, tmp_path, monkeypatch):
    monkeypatch.setenv("CABLE_SIGNING_SECRET", "s3cr3t-signing-value")
    monkeypatch.setenv("CABLE_BROADCAST_KEY", "s3cr3t-broadcast-key")
    inventory = showcase_with_anycable_image(
        tmp_path, ("  signing_secret_env: CABLE_SIGNING_SECRET\n",
                   "  signing_secret_env: CABLE_SIGNING_SECRET\n  broadcast_key_env: CABLE_BROADCAST_KEY\n")
    )
    for mode in ("action_cable", "anycable", "integrated"):
        result = orchestrate("render", inventory, "--out", tmp_path / mode, "--mode", mode)
        assert result.code == 0, result.err
        text = b"".join(tree(tmp_path / mode).values()) + (result.out + result.err).encode()
        assert b"s3cr3t" not in text
        assert b"CABLE_BROADCAST_KEY" in text


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("server:\n  bot_detection: true\n", "server.bot_detection"),
        ("server:\n  websocket:\n    enabled: true\n", "server.websocket"),
        ("applications:\n  tenants:\n    - path: /x/\n      memory_limit: 1G\n", "applications.tenants[0].memory_limit"),
        ("hooks:\n  server:\n    stop: []\n", "hooks.server.stop"),
    ],
)
def test_keys_navigator_silently_ignores_are_render_errors(extra, path):
    expected = f"production/x/navigator.yml: does not match navigator.schema.json: {path}: unknown key"
    with pytest.raises(RenderError, match=re.escape(expected)):
        files_module.check_file("production/x/navigator.yml", "navigator/regions/x/navigator.yml", extra)


def test_a_failing_region_writes_nothing(orchestrate, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", out, "--region", "ams").code == 0
    before = tree(out)
    real_full_config = files_module.full_config

    def broken_for_syd(inventory, settings):
        config = real_full_config(inventory, settings)
        if settings.region.code == "syd":
            config["maintenance"]["enabled"] = "maybe"
        return config

    monkeypatch.setattr(files_module, "full_config", broken_for_syd)
    result = orchestrate("render", SHOWCASE_INVENTORY, "--out", out)
    assert result.code == 1
    assert ("render failed, nothing written: production/navigator/regions/syd/navigator.yml: does not match "
            "navigator.schema.json: maintenance.enabled: expected boolean, got 'maybe'") in result.err
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".out.lock") == ["out"]


def test_rerender_replaces_each_image_directory_whole_and_keeps_the_rest(orchestrate, tmp_path):
    out = tmp_path / "out"
    assert orchestrate("render", SHOWCASE_INVENTORY, "--out", out).code == 0
    (out / "production" / "navigator" / "regions" / "ord" / "stale.txt").write_text("left over")
    (out / "notes.txt").write_text("operator's notes")
    staging_before = tree(out / "staging")
    result = orchestrate("render", SHOWCASE_INVENTORY, "--out", out, "--region", "ord", "--websocket", "off")
    assert result.code == 0
    assert not (out / "production" / "navigator" / "regions" / "ord" / "stale.txt").exists()
    assert (out / "notes.txt").read_text() == "operator's notes"
    assert tree(out / "staging") == staging_before
    assert enabled_by_region(out)["ord"] is False


def test_every_rendered_configuration_is_in_navigator_s_own_key_order():
    """Keys come in the order schema/navigator.schema.json lists them, so files read like Navigator's docs and do
    not depend on the inventory's order; the generator appends its long lists last, so this must stay true."""
    files = rendered(mode="integrated")
    for path in files:
        if path.endswith(("/navigator.yml", "/boot.yml")):
            config = parsed(files, path)
            assert json.dumps(config) == json.dumps(in_schema_order(config, "navigator.schema.json")), path


def test_the_hub_knows_a_client_by_the_address_fly_s_proxy_names_unless_told_otherwise(tmp_path):
    """Behind Fly's proxy every client reaches Navigator from the proxy: its per-client limits need Fly-Client-IP."""
    from hub.config import Overrides, load

    default = parsed(rendered(mode="hub"), "navigator/regions/ord/hub.yml")
    assert default["client_ip_header"] == "Fly-Client-IP"
    own_hosts = copy_showcase(tmp_path, ("  integrated:\n", "  hub:\n    client_ip_header: X-Forwarded-For\n  integrated:\n"))
    text = rendered(own_hosts, mode="hub")["navigator/regions/ord/hub.yml"]
    path = tmp_path / "hub.yml"
    path.write_text(text)
    assert load(None, Overrides(hub_config=str(path)), {"CABLE_SIGNING_SECRET": "s"}).client_ip_header == "X-Forwarded-For"
