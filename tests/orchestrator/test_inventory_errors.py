"""Bad inventories: every problem named by path and line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.orchestrator.conftest import MINIMAL_INVENTORY, copy_showcase, write_inventory


def render_into(orchestrate, inventory: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = orchestrate("render", inventory, "--out", out)
    assert not out.exists(), "a failed render must not write anything"
    assert not list(tmp_path.glob(".out.staging.*")), "staging directory left behind"
    return result


def test_minimal_inventory_is_valid(orchestrate, tmp_path):
    result = orchestrate("validate", write_inventory(tmp_path))
    assert result.code == 0, result.err
    assert result.out.startswith("inventory.yml: valid; production (demo: 4 regions); 2 tenants;")


def test_yaml_1_1_boolean_is_a_schema_error_naming_path_and_line(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("      enabled: true\ntenants", "      enabled: no\ntenants"))
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert f"regions[3].websocket.enabled: expected boolean, got 'no' ({inventory}:16)" in result.err.splitlines()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("listen: 9999", "listen: 012", "app.listen: expected integer, got '012' (%s:4)"),
        ("interval_seconds: 1", "interval_seconds: 1:30", "rollout.health_check.interval_seconds: expected number, got '1:30' (%s:28)"),
        ("  enabled: true\n  mode", "  enabled: on\n  mode", "websocket.enabled: expected boolean, got 'on' (%s:23)"),
        ("mode: integrated", "mode: hybrid", "websocket.mode: expected one of 'action_cable', 'anycable', 'integrated', 'hub', got 'hybrid' (%s:24)"),
        ("  - code: dfw", "  - code: DFW", "regions[1].code: 'DFW' does not match ^[a-z]{3}$ (%s:12)"),
        ("  name: demo", "  name: demo\n  colour: blue", "app.colour: unknown key (allowed: checkout, listen, name, primary_region, rails_root, region_paths, root_path) (%s:3)"),
        ("  primary_region: iad\n", "", "app.primary_region: missing required key (%s:2)"),
    ],
)
def test_schema_errors_name_path_and_line(orchestrate, tmp_path, old, new, expected):
    inventory = write_inventory(tmp_path, replace=(old, new))
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert expected % inventory in result.err.splitlines()


def test_all_errors_reported_at_once_sorted_by_path(orchestrate, tmp_path):
    text = (
        MINIMAL_INVENTORY.replace("mode: integrated", "mode: hybrid")
        .replace("listen: 9999", "listen: nine")
        .replace("    - {year: 2025, studio: raleigh, region: ord}", "    - {year: 2025, studio: raleigh, region: 7}")
    )
    result = orchestrate("validate", write_inventory(tmp_path, text))
    assert result.code == 2
    problems = [line.split(":")[0] for line in result.err.splitlines()[:-1]]
    assert problems == ["app.listen", "tenants.events[1].region", "websocket.mode"]
    assert result.err.splitlines()[-1] == f"{tmp_path / 'inventory.yml'}: 3 problems, nothing written"


def test_duplicate_key_names_both_lines(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("  listen: 9999\n", "  listen: 9999\n  listen: 8080\n"))
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert f"{inventory}:5: duplicate key 'listen' (first defined on line 4)" in result.err


def test_a_second_block_of_the_same_name_is_refused_not_merged(orchestrate, tmp_path):
    """A second `websocket:` block would silently replace the first one."""
    second = "websocket:\n  enabled: false\n  mode: action_cable\n"
    inventory = write_inventory(tmp_path, replace=("rollout:\n", second + "rollout:\n"))
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert f"{inventory}:26: duplicate key 'websocket' (first defined on line 22)" in result.err.splitlines()


def test_duplicates_types_and_cross_references_are_reported_together(orchestrate, tmp_path):
    text = (
        MINIMAL_INVENTORY.replace("  listen: 9999\n", "  listen: 9999\n  listen: 8080\n")
        .replace("  - code: dfw", "  - code: DFW")
        .replace("regions: [ams, dfw, iad, ord]", "regions: [ams, dfw, iad, ord, lhr]")
    )
    result = orchestrate("validate", write_inventory(tmp_path, text))
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines[-1] == f"{tmp_path / 'inventory.yml'}: 4 problems, nothing written"
    assert [line.split(" (")[0].split(": ")[0] for line in lines[:-1]] == [
        f"{tmp_path / 'inventory.yml'}:5",
        "environments.production.regions[1]",
        "environments.production.regions[4]",
        "regions[1].code",
    ]


def test_text_that_is_not_yaml_names_the_line(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("    regions: [ams, dfw, iad, ord]", "    regions: [ams, dfw"))
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert f"{inventory}:10: not valid YAML" in result.err


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("    websocket:\n      enabled: true", "    websocket:\n    \tenabled: true", "16:5"),
        ("regions:\n  - code: ams", "regions:\n\t- code: ams", "11:1"),
    ],
    ids=["after spaces", "indenting an item"],
)
def test_a_tab_is_named_with_its_line_and_column(orchestrate, tmp_path, old, new, where):
    inventory = write_inventory(tmp_path, replace=(old, new))
    result = orchestrate("validate", inventory)
    assert result.code == 2
    assert result.err.splitlines()[0] == f"{inventory}:{where}: a tab character: YAML indents with spaces only"


def test_missing_inventory_file(orchestrate, tmp_path):
    result = render_into(orchestrate, tmp_path / "absent.yml", tmp_path)
    assert result.code == 2
    assert f"{tmp_path / 'absent.yml'}: file not found" in result.err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("regions: [ams, dfw, iad, ord]", "regions: [ams, dfw, iad, ord, lhr]",
         "environments.production.regions[4]: region 'lhr' is not listed in regions (%s:9)"),
        ("  - code: dfw", "  - code: ams", "regions[1].code: duplicate region 'ams' (also regions[0]) (%s:12)"),
        ("primary_region: iad", "primary_region: syd", "app.primary_region: region 'syd' is not listed in regions (%s:5)"),
        ("regions: [ord], bake: 1h", "regions: [ord, syd], bake: 1h",
         "rollout.stages[0].regions[1]: region 'syd' is not listed in environments.production.regions (%s:30)"),
        ("environment: production, regions", "environment: staging, regions",
         "rollout.stages[0].environment: environment 'staging' is not defined (%s:30)"),
        ("studio: raleigh, region: ord", "studio: raleigh, region: syd",
         "tenants.events[1].region: region 'syd' is in no environment (%s:21)"),
        ("  cable_path: /demo/regions/{region}/cable\n", "  cable_path: /demo/regions/{region}/cable\n  channels:\n    HeatChannel: {stream: 'heat-{data base}'}\n",
         "websocket.channels.HeatChannel.stream: 'heat-{data base}': placeholders are {name} with letters, digits and _ (%s:27)"),
    ],
)
def test_cross_reference_errors(orchestrate, tmp_path, old, new, expected):
    inventory = write_inventory(tmp_path, replace=(old, new))
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert expected % inventory in result.err.splitlines()


def test_same_region_in_two_stages_is_refused(orchestrate, tmp_path):
    inventory = write_inventory(
        tmp_path,
        replace=("bake: 1h}\n", "bake: 1h}\n    - {name: wave, environment: production, regions: [ams, ord], bake: 1h}\n"),
    )
    result = orchestrate("validate", inventory)
    assert result.code == 2
    assert (
        f"rollout.stages[1].regions[1]: region 'ord' is already rolled out by stage 'canary' ({inventory}:31)"
        in result.err.splitlines()
    )


def test_port_clash_is_refused(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("rollout:\n", "modes:\n  anycable: {port: 9999}\nrollout:\n"))
    result = orchestrate("validate", inventory)
    assert result.code == 2
    assert f"modes.anycable.port: port 9999 is already app.listen ({inventory}:27)" in result.err.splitlines()


def test_problem_in_the_showcases_file_names_that_file_and_line(orchestrate, tmp_path):
    inventory = copy_showcase(tmp_path)
    showcases = tmp_path / "showcases.yml"
    lines = showcases.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[4] == "    :region: dfw\n"
    del lines[4]
    showcases.write_text("".join(lines), encoding="utf-8")
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert f"tenants.file: {showcases}:4: studio 2026/clearwater: missing :region" in result.err.splitlines()


def test_unknown_region_on_the_command_line(orchestrate, tmp_path):
    out = tmp_path / "out"
    result = orchestrate("render", write_inventory(tmp_path), "--out", out, "--region", "xyz")
    assert result.code == 2
    assert "--region xyz: not a region of inventory.yml (known: ams, dfw, iad, ord)" in result.err
    assert not out.exists()


NAVIGATOR_SECTION = """\
navigator:
  server:
    health_check: {path: /up}
    cgi_scripts:
      - {path: /demo/update_config, script: /rails/script/update.rb}
  hooks:
    server:
      ready:
        - {command: /rails/script/ready.sh}
runtime_config:
  refresh_cgi: [/demo/update_config]
rollout:
"""


def with_navigator_section(tmp_path: Path, old: str = "", new: str = "") -> Path:
    section = NAVIGATOR_SECTION.replace(old, new, 1) if old else NAVIGATOR_SECTION
    assert old in NAVIGATOR_SECTION, f"test setup: {old!r} is not in the section"
    return write_inventory(tmp_path, replace=("rollout:\n", section))


def test_a_navigator_section_in_navigator_s_own_structure_is_valid(orchestrate, tmp_path):
    result = orchestrate("validate", with_navigator_section(tmp_path))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    health_check: {path: /up}\n", "    health_check: {path: /up}\n    bot_detection: {enabled: true}\n",
         "navigator.server.bot_detection: unknown key (allowed: cgi_scripts, health_check, hostname, idle, listen, "
         "root_path, static, trust_proxy) (%s:29)"),
        ("    health_check: {path: /up}\n", "    health_check: {path: /up}\n    listen: 8080\n",
         "navigator.server.listen: written by the generator from app.listen; remove it here (%s:29)"),
        ("  hooks:\n", "  cable: {enabled: true}\n  hooks:\n",
         "navigator.cable: written by the generator from websocket; remove it here (%s:31)"),
        ("        - {command: /rails/script/ready.sh}\n",
         "        - {command: /rails/script/ready.sh, reload_config: config/navigator.yml}\n",
         "navigator.hooks.server.ready[0].reload_config: the generator decides which hooks reload the "
         "configuration (see runtime_config) (%s:34)"),
        ("script: /rails/script/update.rb}", "script: /rails/script/update.rb, reload_config: x.yml}",
         "navigator.server.cgi_scripts[0].reload_config: list the script's path in runtime_config.refresh_cgi "
         "instead (%s:30)"),
        ("  refresh_cgi: [/demo/update_config]", "  refresh_cgi: [/demo/update]",
         "runtime_config.refresh_cgi[0]: '/demo/update' is not a path of navigator.server.cgi_scripts (%s:36)"),
        ("  hooks:\n", "  applications:\n    env: {CABLE_URL: x}\n  hooks:\n",
         "navigator.applications.env.CABLE_URL: written by the generator for the WebSocket mode; remove it here "
         "(%s:32)"),
    ],
)
def test_navigator_section_problems_name_path_and_line(orchestrate, tmp_path, old, new, expected):
    inventory = with_navigator_section(tmp_path, old, new)
    result = render_into(orchestrate, inventory, tmp_path)
    assert result.code == 2
    assert expected % inventory in result.err.splitlines()


def test_a_tenant_env_field_that_does_not_exist(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("tenants:\n  source: inline\n",
                                                   "tenants:\n  source: inline\n  env: {OWNER: '{studio_name}'}\n"))
    result = orchestrate("validate", inventory)
    assert result.code == 2
    assert (f"tenants.env.OWNER: unknown field {{studio_name}} (fields: year, studio, event, database, scope, owner, "
            f"name, logo, locale, locale_underscored, region) ({inventory}:19)") in result.err.splitlines()


CHANNEL = "  channels:\n    HeatChannel: {stream: 'heat-{database}'}\n"


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("integrated", "Navigator's built-in cable speaks only its own protocol"),
        ("anycable", "anycable-go without RPC rejects every channel but $pubsub, Turbo::StreamsChannel (with "
                     "websocket.turbo_streams) and CableReady::Stream (with websocket.cable_ready)"),
    ],
)
def test_a_mode_that_cannot_serve_the_app_s_channels_is_refused(orchestrate, tmp_path, mode, why):
    inventory = write_inventory(tmp_path, replace=("  cable_path: /demo/regions/{region}/cable\n",
                                                   "  cable_path: /demo/regions/{region}/cable\n" + CHANNEL))
    result = orchestrate("render", inventory, "--out", tmp_path / "out", "--mode", mode, "--region", "ord")
    assert result.code == 2
    # The other regions of the image stay in the inventory's integrated mode, which cannot serve it either.
    prefix = f"websocket.channels.HeatChannel: {mode} mode cannot serve this channel: {why}"
    (line,) = [line for line in result.err.splitlines() if line.startswith(prefix)]
    regions = "ord" if mode == "anycable" else "ams, dfw, iad, ord"
    assert line.endswith(f"(regions in {mode} mode: {regions}) ({inventory}:27)")
    assert not (tmp_path / "out").exists()
    assert orchestrate("render", inventory, "--out", tmp_path / "out", "--mode", "action_cable").code == 0


def test_anycable_mode_needs_its_image_pinned_by_digest(orchestrate, tmp_path):
    inventory = write_inventory(tmp_path, replace=("      enabled: true\ntenants", "      mode: anycable\ntenants"))
    result = orchestrate("validate", inventory)
    assert result.code == 2
    assert result.err.splitlines()[0] == (
        "modes.anycable.image: anycable mode needs the official anycable-go image pinned by digest "
        "(anycable/anycable-go:1.5.1@sha256:<digest>), since its releases publish no checksums "
        f"(regions in anycable mode: ord) ({inventory})"
    )
    assert orchestrate("validate", write_inventory(tmp_path)).code == 0


@pytest.mark.parametrize(
    ("make_out", "expected"),
    [
        (lambda tmp: "", "--out '': an empty path"),
        (lambda tmp: (tmp / "file.txt", (tmp / "file.txt").write_text("x"))[0], "is not a directory"),
        (lambda tmp: (tmp / "file.txt" / "out", (tmp / "file.txt").write_text("x"))[0], "file.txt"),
        (lambda tmp: "/proc/self/out", "--out /proc/self/out:"),
    ],
    ids=["empty", "existing-file", "under-a-file", "unwritable"],
)
def test_a_bad_out_directory_is_a_clear_error_and_nothing_is_written(orchestrate, tmp_path, make_out, expected):
    inventory = write_inventory(tmp_path)
    out = make_out(tmp_path)
    before = sorted(path.name for path in tmp_path.iterdir())
    result = orchestrate("render", inventory, "--out", out)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err
    assert result.err.startswith("--out ")
    assert expected in result.err
    assert sorted(path.name for path in tmp_path.iterdir()) == before
