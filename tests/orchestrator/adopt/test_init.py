"""`orchestrate init` on Showcase's own ord configuration, on an Action Cable app of one region, and on bad input."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from hub import yaml_loader
from hub.yaml_loader import load_yaml_file
from tests.orchestrator.adopt.files import FIXTURES, SHOWCASE_ORD
from tests.orchestrator.conftest import SHOWCASES_FILE

pytestmark = pytest.mark.timeout(60)

ACTION_CABLE = FIXTURES / "action-cable"
TWO_REGIONS = FIXTURES / "two-regions"
ORD = f"ord={ACTION_CABLE / 'navigator.yml'}"


def test_showcase_s_ord_configuration_renders_back_the_same(orchestrate, tmp_path):
    out = tmp_path / "showcase.yml"
    result = orchestrate("init", "--navigator", SHOWCASE_ORD, "--tenants-from", SHOWCASES_FILE, "--out", out)
    assert result.code == 0, result.out + result.err
    assert "  ord  the same, once these are explained:" in result.out
    assert "unexplained" not in result.out
    # The region file named the seven other regions in its replays: each is rendered, with nothing to compare.
    assert result.out.count("no file of this region was given") == 7
    assert "navigator.ord.yml:46: Navigator ignores server.bot_detection" in result.out
    data = load_yaml_file(out).data
    assert data["app"]["region_paths"] == "/showcase/regions/{region}/"
    assert data["websocket"]["mode"] == "integrated" and data["websocket"]["cable_path"] == "/showcase/regions/{region}/cable"
    assert data["tenants"]["env"] == {"RAILS_APP_OWNER": "{owner}", "RAILS_APP_SCOPE": "{scope}", "SHOWCASE_LOGO": "{logo}"}
    assert data["runtime_config"] == {"sync": [{"command": "ruby", "args": ["script/nav_initialization.rb"],
                                                "timeout": "5m"}], "refresh_cgi": ["/showcase/update_config"]}
    validated = orchestrate("validate", out)
    assert validated.code == 0 and validated.err == "", validated.err


def test_the_proof_lists_what_the_inventory_could_not_reproduce(orchestrate, tmp_path):
    changed = tmp_path / "navigator.ord.yml"
    text = SHOWCASE_ORD.read_text(encoding="utf-8")
    changed.write_text(text.replace("      database: 2023-lakeview-showcase\n", "      database: 2023-lakeview-x\n"), "utf-8")
    result = orchestrate("init", "--navigator", changed, "--tenants-from", SHOWCASES_FILE, "--out", tmp_path / "i.yml")
    assert result.code == 1
    assert ("! applications.tenants./showcase/2023/lakeview/showcase/.env.RAILS_APP_DB: original '2023-lakeview-x', "
            "rendered '2023-lakeview-showcase'") in result.out


def test_an_action_cable_app_is_recognised_and_plan_shows_the_move_to_integrated(orchestrate, tmp_path):
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--navigator", ACTION_CABLE / "navigator.yml", "--fly", ACTION_CABLE / "fly.toml",
                         "--out", out)
    assert result.code == 0, result.out + result.err
    assert "today ord: action_cable, websocket on" in result.out
    assert "Redis in the foreground" in result.out
    assert "fly.toml: http_service.processes" not in result.out
    data = load_yaml_file(out).data
    assert data["websocket"]["mode"] == "integrated"
    assert data["modes"] == {"action_cable": {"port": 28080, "env": {"RAILS_ENV": "production"},
                                              "redis_config": "/etc/redis/redis.conf"}}
    assert data["environments"]["production"]["fly_app"] == "events-app"
    assert data["environments"]["production"]["vm"] == {"memory_mb": 1024}
    plan = orchestrate("plan", out, "--json", "--state", tmp_path / "state")
    assert plan.code == 0, plan.err
    (row,) = json.loads(plan.out)["memory"]["regions"]
    assert row["after_mode"] == "integrated"  # from nothing recorded: the Action Cable baseline, as the app runs
    assert row["before"] == {"navigator": 17.6, "cable_server": 137.8, "redis": 13.5} and row["saving_mb"] > 100


def test_a_file_that_is_not_navigator_s_configuration_is_refused(orchestrate, tmp_path):
    other = tmp_path / "navigator.ord.yml"
    other.write_text("development:\n  adapter: async\n", encoding="utf-8")
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--navigator", other, "--out", out)
    assert result.code == 2 and not out.exists()
    assert f"{other}:1: not Navigator's configuration" in result.err
    assert "nothing written" in result.err


def test_a_key_navigator_does_not_read_is_refused_with_its_line(orchestrate, tmp_path):
    typo = tmp_path / "navigator.ord.yml"
    typo.write_text((ACTION_CABLE / "navigator.yml").read_text("utf-8").replace("  listen: 3000\n",
                                                                                 "  listen: 3000\n  liste: 3001\n"), "utf-8")
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--navigator", typo, "--out", out)
    assert result.code == 2 and not out.exists()
    assert f"{typo}:4: server.liste: Navigator does not read this key" in result.err


def test_region_files_that_disagree_where_no_rule_explains_it_are_refused(orchestrate, tmp_path):
    shutil.copy(TWO_REGIONS / "navigator.ams.yml", ams := tmp_path / "navigator.ams.yml")
    iad = tmp_path / "navigator.iad.yml"
    iad.write_text((TWO_REGIONS / "navigator.iad.yml").read_text("utf-8").replace("timeout: 15m", "timeout: 20m"), "utf-8")
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--navigator", ams, iad, "--out", out)
    assert result.code == 2 and not out.exists(), result.out
    assert f"{iad}:7: server.idle.timeout is '20m' here but '15m' in {ams}:7" in result.err


def test_two_region_files_share_everything_but_their_own_paths(orchestrate, tmp_path):
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--navigator", TWO_REGIONS / "navigator.ams.yml", TWO_REGIONS / "navigator.iad.yml",
                         "--fly", TWO_REGIONS / "fly.toml", "--out", out)
    assert result.code == 0, result.out + result.err
    assert "  ams  the same" in result.out and "  iad  the same" in result.out
    data = load_yaml_file(out).data
    assert data["tenants"]["events"] == [{"year": 2025, "studio": "boston", "region": "ams"},
                                         {"year": 2025, "studio": "denver", "region": "iad"}]
    assert data["tenants"]["demo"]["env"] == {"APP_SCOPE": "regions/{region}/demo"}
    assert data["navigator"]["routes"]["redirects"] == [{"from": "^/app/demo/?$", "to": "/app/regions/{region}/demo/"}]


def test_a_fifo_or_a_file_over_the_bound_is_refused_not_waited_on(orchestrate, tmp_path, monkeypatch):
    fifo = tmp_path / "fly.toml"
    os.mkfifo(fifo)  # opened for reading without a writer, a blocking read would wait forever
    out = tmp_path / "inventory.yml"
    for option in ("--fly", "--tenants-from"):
        result = orchestrate("init", "--regions", ORD, option, fifo, "--out", out)
        assert result.code == 2 and not out.exists(), result.out
        assert f"{fifo}: cannot read: not a regular file" in result.err
    monkeypatch.setattr(yaml_loader, "MAX_FILE_BYTES", 100)
    result = orchestrate("init", "--regions", ORD, "--out", out)
    assert result.code == 2 and not out.exists()
    assert f"{ACTION_CABLE / 'navigator.yml'}: cannot read: larger than 100 bytes" in result.err


def test_a_fly_toml_nested_past_the_stack_is_refused_as_not_valid(orchestrate, tmp_path):
    fly = tmp_path / "fly.toml"
    fly.write_text('app = "x"\ndeep = ' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--regions", ORD, "--fly", fly, "--out", out)
    assert result.code == 2 and not out.exists()
    assert f"{fly}: not valid TOML: nested too deep" in result.err


def test_fly_settings_the_inventory_cannot_hold_are_listed_by_name_shown_printable(orchestrate, tmp_path):
    fly = tmp_path / "fly.toml"
    fly.write_text('app = "events-app"\nenv = "not a table"\nmounts = [1]\n"\\u001b[31mred" = 1\n'
                   '[http_service]\n  auto_stop_machines = "stop"\n', encoding="utf-8")
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--regions", ORD, "--fly", fly, "--out", out)
    assert result.code == 0, result.out + result.err
    for key in ("env", "mounts", "http_service.auto_stop_machines = 'stop'", "\\x1b[31mred"):
        assert f"{fly}: {key}: not kept: the inventory has no place for it" in result.out, result.out
    assert "\x1b" not in result.out
    # No primary_region in fly.toml: the region is the file's, and nothing is said about fly.toml's.
    assert "primary_region" not in result.out
    production = load_yaml_file(out).data["environments"]["production"]
    assert production["fly_app"] == "events-app" and "env" not in production and "http_service" not in production


def test_a_tenant_file_s_problems_name_it_not_a_copy(orchestrate, tmp_path):
    tenants = tmp_path / "showcases.yml"
    tenants.write_text("- not a mapping\n", encoding="utf-8")
    out = tmp_path / "inventory.yml"
    result = orchestrate("init", "--navigator", SHOWCASE_ORD, "--tenants-from", tenants, "--out", out)
    assert result.code == 2 and not out.exists()
    assert result.err.splitlines()[0] == f"{tenants}:1: expected a mapping of years to studios"


def test_an_out_that_cannot_be_written_is_a_problem_not_a_traceback(orchestrate, tmp_path):
    out = tmp_path / "inventory.yml"
    out.mkdir()
    result = orchestrate("init", "--regions", ORD, "--out", out, "--force")
    assert result.code == 2 and out.is_dir()
    assert f"--out {out}: cannot write there (" in result.err and "nothing written" in result.err


def test_an_out_that_names_an_input_is_refused_even_with_force(orchestrate, tmp_path):
    """The inventory must never replace the app's own files, whatever the path or link that names them."""
    app = tmp_path / "app"
    app.mkdir()
    navigator, fly = app / "navigator.yml", app / "fly.toml"
    shutil.copy(ACTION_CABLE / "navigator.yml", navigator)
    shutil.copy(ACTION_CABLE / "fly.toml", fly)
    linked = tmp_path / "linked.toml"
    os.link(fly, linked)
    originals = {path: path.read_bytes() for path in (navigator, fly)}
    for out in (navigator, tmp_path / "app" / ".." / "app" / "navigator.yml", linked):
        result = orchestrate("init", "--regions", f"ord={navigator}", "--fly", fly, "--out", out, "--force")
        assert result.code == 2, result.out + result.err
        assert result.err.startswith(f"--out {out}: that is "), result.err
        assert "the inventory would replace it" in result.err and "nothing written" in result.err
        assert {path: path.read_bytes() for path in originals} == originals
    refused = orchestrate("init", "--navigator", navigator, "--out", navigator)
    assert refused.err.splitlines()[0] == (
        f"--out {navigator}: that is {navigator}, which --navigator reads; the inventory would replace it: name another file")
    assert navigator.read_bytes() == originals[navigator]
