"""What the rollout engine needs from a place where regions run.

A target *builds* the operations of a deployment (pure, so `plan` and
`--dry-run` can print them) and *runs* operations and probes. The engine never
asks a target whether it is a dry run: a dry run simply never executes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from orchestrator.rollout.model import Command, Operation, RegionKey, RegionState, WriteFile


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
    name: str

    def operations(self, key: RegionKey, current: RegionState | None, desired: RegionState) -> tuple[Operation, ...]:
        """The writes and commands that take `key` from `current` to `desired`. Pure."""

    def write(self, key: RegionKey, operation: WriteFile) -> None:
        """Put one file in place atomically; raises TargetError."""

    def run(self, key: RegionKey, command: Command) -> CommandResult:
        """Run one command on the region's host, within the command's timeout."""

    def live_files(self, key: RegionKey, names: tuple[str, ...]) -> Mapping[str, str | None]:
        """The region's configuration files as they are now (None for a missing one), for drift."""

    def http_url(self, key: RegionKey, path: str) -> str:
        """Where the orchestrator reaches `path` of the region's front process over HTTP."""

    def cable_url(self, key: RegionKey, path: str) -> str:
        """Where the orchestrator opens the region's cable path (ws:// or wss://)."""

    def request_headers(self, key: RegionKey) -> Mapping[str, str]:
        """Headers the gates send with their requests to the region (Fly: which region to route to)."""

    def publish_command(self, key: RegionKey, stream: str, data_json: str) -> Command:
        """A command that posts a broadcast from the region's own host (Navigator trusts only loopback)."""

    def memory_command(self, key: RegionKey) -> Command:
        """A command that prints a JSON object {process name: resident bytes} for the front and cable processes."""

    def close(self) -> None:
        """Release connections and forwards; the target is not used afterwards."""
