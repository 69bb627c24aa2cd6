"""What the rollout engine needs from a place where regions run.

A target *builds* the operations of a deployment (pure, so `plan` and
`--dry-run` can print them) and *runs* operations and probes. The engine never
asks a target whether it is a dry run: a dry run simply never executes.

A target acts per machine: a region is the set of machines it lists (one on
the local fleet and over ssh, any number on Fly, in any state), a command may
name the machine it acts on, and the gates observe every machine. Where the
gates observe from depends on the target: from here, through the URLs it gives
(`ProbedFromHere`), or on the machine itself (`ProbedOnMachine`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrator.rollout.model import Command, Gate, Machine, Operation, RegionKey, RegionState, Step, WriteFile


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class TargetError(Exception):
    """An operation failed on the target; the message names the region and the operation."""


class Target(Protocol):
    """A place where regions run, each region being the machines the target lists for it."""

    name: str

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple[Operation, ...]:
        """The writes and commands that take `key` from `current` to `desired`. Pure."""

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        """Put one file in place atomically; raises TargetError."""

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        """Run one command on the region's host (on `command.machine`, when it names one), within its timeout."""

    def machines(self, key: RegionKey) -> tuple[Machine, ...]:
        """Every machine of the region, whatever its state; raises TargetError when they cannot be listed."""

    def awake(self, key: RegionKey, machine: Machine) -> AbstractContextManager[None]:
        """While the block runs, `machine` accepts commands and probes; afterwards it is put back in the
        state it had (a suspended or stopped machine is started for the block). Raises TargetError."""

    def readiness(self, steps: Sequence[Step]) -> tuple[str, ...]:
        """Everything missing for running `steps` here (tools, logins, files, secrets), checked before the
        first operation; empty when nothing is."""

    def live_files(self, key: RegionKey, names: tuple[str, ...], machine: str) -> Mapping[str, str | None]:
        """The region's configuration files on `machine` as they are now (None for a missing one), for drift."""

    def memory_command(self, key: RegionKey, machine: str) -> Command:
        """A command that prints a JSON object {process name: resident bytes} for the front and cable processes."""

    def metrics_command(self, key: RegionKey, machine: str) -> Command:
        """A command that prints the hub's /metrics as a JSON object {name: value} (hub mode only)."""

    def close(self) -> None:
        """Release connections and forwards; the target is not used afterwards."""


@runtime_checkable
class ProbedFromHere(Protocol):
    """A target whose regions this process reaches itself: the gates probe its URLs."""

    def http_url(self, key: RegionKey, path: str) -> str:
        """Where the orchestrator reaches `path` of the region's front process over HTTP."""

    def cable_url(self, key: RegionKey, path: str) -> str:
        """Where the orchestrator opens the region's cable path (ws:// or wss://)."""

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        """Headers the gates send with their requests to the region."""

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        """A command that posts a broadcast from the region's own host (Navigator trusts only loopback)."""


@runtime_checkable
class ProbedOnMachine(Protocol):
    """A target whose gates run on each machine itself, the only place that knows which machine answered."""

    def probe_command(self, key: RegionKey, machine: str, gate: Gate, timeout: float) -> Command:
        """A command that observes `gate` once on `machine` and prints {"ok", "evidence"} (orchestrator/targets/onhost.py)."""
