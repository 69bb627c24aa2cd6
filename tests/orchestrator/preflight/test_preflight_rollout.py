"""`orchestrate rollout` runs the app's preflight before the first stage that has not passed, on the local fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.preflight.apps import TURBO_CABLE_APP, write_files
from tests.orchestrator.rollout.fleet import Fleet, make_fleet

PERFORMING_CHANNEL = 'class ChatChannel < ApplicationCable::Channel\n  def subscribed\n    stream_from "chat"\n  end\n\n  def speak(data); end\nend\n'


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path)
    yield made
    made.stop_all()


def blocking_app(root: Path) -> Path:
    return write_files(root, {**TURBO_CABLE_APP, "app/channels/chat_channel.rb": PERFORMING_CHANNEL})


def test_a_blocking_app_keeps_the_first_stage_from_starting_unless_forced_with_a_reason(fleet: Fleet, tmp_path: Path) -> None:
    app = blocking_app(tmp_path / "app")
    # Not the first stage that has not passed: promotion holds it, and no preflight runs for it.
    later = fleet.orchestrate("rollout", "--stage", "canary", "--dry-run", "--app", str(app))
    assert later.code == 3 and "stage staging has not passed" in later.err and "preflight" not in later.err

    refused = fleet.orchestrate("rollout", "--stage", "staging", "--yes", "--app", str(app))
    assert refused.code == 3, refused.text
    assert (f"rollout not started: preflight of {app} for the integrated mode found 1 blocking finding "
            f"(app/channels/chat_channel.rb:6 channel-action): see `orchestrate preflight --app {app} --mode integrated`") in refused.err
    assert "(use --force --reason TEXT to go ahead anyway)" in refused.err
    assert not fleet.home("staging/iad").exists()

    dry = fleet.orchestrate("rollout", "--stage", "staging", "--dry-run", "--app", str(app))
    assert dry.code == 3 and "a real run would not start: preflight of" in dry.err

    forced = fleet.orchestrate("rollout", "--stage", "staging", "--yes", "--app", str(app), "--force", "--reason", "demo: channel unused")
    assert forced.code == 0, forced.text
    audit = fleet.query("SELECT message, reason FROM audit WHERE action = 'preflight forced'")
    assert len(audit) == 1
    message, reason = audit[0]
    assert "app/channels/chat_channel.rb:6 channel-action" in str(message) and reason == "demo: channel unused"
    assert fleet.query("SELECT count(*) FROM audit WHERE action = 'promotion forced'") == [(0,)]


def test_the_app_checkout_in_the_inventory_is_audited_before_the_first_stage_that_has_not_passed(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, ("  primary_region: iad\n", "  primary_region: iad\n  checkout: rails\n"))
    try:
        write_files(tmp_path / "rails", TURBO_CABLE_APP)
        staging = fleet.orchestrate("rollout", "--region", "iad", "--yes")
        assert staging.code == 0, staging.text
        assert f"preflight of {tmp_path / 'rails'} before stage staging: integrated ready (0 warnings)" in staging.err
        # Staging passed, so the canary is now the first stage that has not: the app is audited again.
        blocking_app(tmp_path / "rails")
        canary = fleet.orchestrate("rollout", "--stage", "canary", "--dry-run")
        assert canary.code == 3 and "before stage canary: integrated not ready (1 blocking)" in canary.err
    finally:
        fleet.stop_all()


def test_without_an_app_the_rollout_says_no_preflight_ran_and_goes_on(fleet: Fleet) -> None:
    result = fleet.orchestrate("rollout", "--stage", "staging", "--yes")
    assert result.code == 0, result.text
    assert (f"preflight: not run before stage staging: no --app PATH, and {fleet.inventory} has no app.checkout\n"
            in result.err)
