"""`orchestrate preflight`: exit status, where the mode and the app come from, the text and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.orchestrator.preflight.apps import ACTION_CABLE_APP, TURBO_CABLE_APP, write_files
from tests.orchestrator.rollout.fleet import FLEET_INVENTORY

PERFORMING_CHANNEL = 'class ChatChannel < ApplicationCable::Channel\n  def subscribed\n    stream_from "chat"\n  end\n\n  def speak(data); end\nend\n'


def run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(["preflight", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def no_inventory_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORCHESTRATE_INVENTORY", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./orchestrate.yml unless a test writes one


def write_inventory(path: Path, *extra_app_lines: str) -> Path:
    text = FLEET_INVENTORY.replace("  primary_region: iad\n", "  primary_region: iad\n" + "".join(extra_app_lines), 1)
    path.write_text(text, encoding="utf-8")
    return path


def test_ready_app_exits_0_and_the_text_groups_findings_by_severity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {**TURBO_CABLE_APP, "app/views/users/show.html.erb": '<%= turbo_stream_from "user_#{current_user.id}" %>\n'}
    app = write_files(tmp_path / "app", files)
    code, out, _ = run(capsys, "--app", str(app), "--mode", "integrated")
    assert code == 0
    assert out.startswith(f"preflight of {app} for the integrated mode (--mode)\n")
    assert out.index("\nwarnings (1):\n") < out.index("\nnotes (3):\n")
    assert "\nblocking" not in out
    assert "  app/views/users/show.html.erb:1 [stream-per-user]\n" in out
    assert "integrated: ready: 0 blocking findings, 1 warning\n" in out


def test_blocking_findings_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_files(tmp_path / "app", {**TURBO_CABLE_APP, "app/channels/chat_channel.rb": PERFORMING_CHANNEL})
    code, out, _ = run(capsys, "--app", str(app), "--mode", "integrated")
    assert code == 1
    assert "\nblocking (1):\n  app/channels/chat_channel.rb:6 [channel-action]\n" in out
    assert "integrated: not ready: 1 blocking finding, 0 warnings\n" in out


@pytest.mark.parametrize("case", ["missing", "not rails", "file", "bad inventory", "no app"])
def test_bad_input_exits_2_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    app = write_files(tmp_path / "app", TURBO_CABLE_APP)
    arguments = ["--app", str(app)]
    if case == "missing":
        arguments = ["--app", str(tmp_path / "nowhere")]
        expected = f"{tmp_path / 'nowhere'}: no such directory"
    elif case == "not rails":
        (tmp_path / "plain").mkdir()
        arguments = ["--app", str(tmp_path / "plain")]
        expected = "not a Rails app (no config/application.rb)"
    elif case == "file":
        arguments = ["--app", str(app / "Gemfile")]
        expected = "Gemfile: not a directory"
    elif case == "bad inventory":
        (tmp_path / "bad.yml").write_text("app:\n  name: demo\n  name: again\n", encoding="utf-8")
        arguments += [str(tmp_path / "bad.yml")]
        expected = "duplicate key 'name'"
    else:
        arguments = []
        expected = "no app: give --app PATH"
    code, out, err = run(capsys, *arguments)
    assert code == 2
    assert out == ""
    assert expected in err


def test_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = write_files(tmp_path / "app", {**TURBO_CABLE_APP, "app/channels/chat_channel.rb": PERFORMING_CHANNEL})
    code, out, _ = run(capsys, "--app", str(app), "--mode", "hub", "--json")
    document = json.loads(out)
    assert code == 1 == document["exit_status"]
    assert set(document) == {"app", "mode", "protocols", "modes", "fit", "findings", "exit_status"}
    assert (document["app"], document["mode"], document["protocols"]) == (str(app), "hub", ["navigator"])
    assert document["modes"]["integrated"] == {"fits": False, "blocking": 1, "warnings": 0}
    assert document["modes"]["action_cable"]["fits"] is False  # Action Cable on Puma does not speak Navigator's protocol
    assert document["fit"] == []
    first = document["findings"][0]
    assert set(first) == {"code", "severity", "file", "line", "message", "remedy", "modes"}
    assert (first["code"], first["severity"], first["file"], first["line"], first["modes"]) == (
        "channel-action", "blocking", "app/channels/chat_channel.rb", 6, ["hub"])
    severities = [finding["severity"] for finding in document["findings"]]
    assert severities == sorted(severities, key=["blocking", "warning", "info"].index)


def test_the_mode_comes_from_the_inventory_found_like_the_other_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = write_files(tmp_path / "app", ACTION_CABLE_APP)  # Action Cable clients: the fleet's integrated mode blocks
    inventory = write_inventory(tmp_path / "fleet.yml")
    for arguments in ([str(inventory)], ["--inventory", str(inventory)]):
        code, out, _ = run(capsys, "--app", str(app), *arguments)
        assert code == 1
        assert out.startswith(f"preflight of {app} for the integrated mode (websocket.mode of {inventory})\n")
    monkeypatch.setenv("ORCHESTRATE_INVENTORY", str(inventory))
    assert run(capsys, "--app", str(app))[0] == 1
    monkeypatch.delenv("ORCHESTRATE_INVENTORY")
    write_inventory(tmp_path / "orchestrate.yml")
    code, out, _ = run(capsys, "--app", str(app))
    assert code == 1 and "(websocket.mode of orchestrate.yml)" in out
    # --mode beats the inventory's mode.
    assert run(capsys, "--app", str(app), "--mode", "action_cable")[0] == 0


def test_the_app_comes_from_app_checkout_relative_to_the_inventory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_files(tmp_path / "project" / "rails", TURBO_CABLE_APP)
    inventory = write_inventory(tmp_path / "project" / "deploy.yml", "  checkout: rails\n")
    code, out, _ = run(capsys, str(inventory))
    assert code == 0
    assert out.startswith(f"preflight of {tmp_path / 'project' / 'rails'} for the integrated mode")


def test_without_mode_or_inventory_every_mode_is_checked_and_the_fitting_ones_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    navigator_app = write_files(tmp_path / "navigator", TURBO_CABLE_APP)
    code, out, _ = run(capsys, "--app", str(navigator_app))
    assert code == 0
    assert "for every mode (no --mode and no inventory)" in out
    assert "modes that fit: integrated (blocking findings per mode: action_cable 1, anycable 1, integrated 0, hub 1)\n" in out
    assert "  app/views/scores/index.html.erb:2 [client-protocol] (action_cable, anycable)\n" in out
    # An app that performs channel actions fits only Action Cable: it cannot leave it yet.
    performing = write_files(tmp_path / "performing", {**ACTION_CABLE_APP, "app/channels/chat_channel.rb": PERFORMING_CHANNEL})
    code, out, _ = run(capsys, "--app", str(performing))
    assert code == 1
    assert "modes that fit: action_cable (" in out
