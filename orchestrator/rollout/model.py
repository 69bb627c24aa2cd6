"""The rollout's values: what a region runs, the operations that change it, the gates that judge it.

Everything here is data. A plan is a tuple of `Step`s built without touching a
target; the engine is the only code that executes them.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from orchestrator.model import Mode


class StepState(StrEnum):
    """A region's phase within one step; stored in the journal before and after each change."""

    PENDING = "pending"
    DEPLOYING = "deploying"  # files being written and the region reloaded or restarted
    GATING = "gating"  # deployed; health gates running
    PASSED = "passed"
    ROLLING_BACK = "rolling_back"  # gates failed; switching the WebSocket off
    ROLLED_BACK = "rolled_back"  # gates failed; the switch is off and the region is healthy again
    FAILED = "failed"  # gates failed and the region could not be shown healthy afterwards


FINAL_STATES = frozenset({StepState.PASSED, StepState.ROLLED_BACK, StepState.FAILED})

Action = Literal["deploy", "rollback", "restore"]
GateKind = Literal["http", "websocket", "memory"]
Protocol = Literal["navigator", "actioncable"]


@dataclass(frozen=True, order=True)
class RegionKey:
    """A region of one environment: staging's iad and production's iad are different machines."""

    environment: str
    region: str

    def __str__(self) -> str:
        return f"{self.environment}/{self.region}"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Machine:
    """One machine of a region as its target lists it. A region is the set of machines its target lists:
    one on the local fleet and over ssh, any number on Fly, each in any state."""

    id: str
    state: str = "started"
    image: str = ""  # the exact image it runs ("registry/repository:tag@digest"), where the target has images

    def describe(self) -> str:
        return f"{self.id} ({self.state})"


@dataclass(frozen=True)
class RegionState:
    """What a region runs: its mode, the WebSocket switch, the configuration files (name -> text),
    and, where the target has images, the image each machine runs (machine id -> image)."""

    mode: Mode
    websocket_enabled: bool
    files: Mapping[str, str] = field(repr=False)
    images: Mapping[str, str] = field(default_factory=dict)

    @property
    def hashes(self) -> dict[str, str]:
        return {name: content_hash(text) for name, text in sorted(self.files.items())}

    @property
    def switch(self) -> str:
        return "on" if self.websocket_enabled else "off"

    def describe(self) -> str:
        return f"{self.mode}, websocket {self.switch}"


@dataclass(frozen=True)
class Command:
    """A program to run on the target, as argv. Secrets are passed by the names of environment variables.

    `machine`: the id of the region's machine it acts on ("" for none, or for a region of one
    machine). The engine runs a machine's commands while the target keeps that machine awake.
    """

    argv: tuple[str, ...]
    label: str
    env_names: tuple[str, ...] = ()
    timeout_seconds: float = 60.0
    host: str = ""  # where it runs, when that is not this machine (shown, not used to connect)
    machine: str = ""

    def display(self) -> str:
        shown = _on_host(self.host, shlex.join(self.argv))
        return f"{shown}  (reads {', '.join(self.env_names)} from the environment)" if self.env_names else shown


@dataclass(frozen=True)
class WriteFile:
    """Put `text` at `path` on the target, atomically (never a half-written file there)."""

    path: str
    text: str = field(repr=False)
    host: str = ""

    @property
    def label(self) -> str:
        return f"write {self.path}"

    def display(self) -> str:
        return _on_host(self.host, f"write {self.path} (sha256 {content_hash(self.text)[:12]}, {len(self.text.encode())} bytes)")


def _on_host(host: str, shown: str) -> str:
    return f"{host}: {shown}" if host else shown


Operation = WriteFile | Command


@dataclass(frozen=True)
class GateTiming:
    """Like an Argo Rollouts analysis: observe every `interval`, pass after `count` successes in a row,
    fail after more than `failure_limit` failures, or when `deadline` passes first."""

    interval_seconds: float
    timeout_seconds: float
    deadline_seconds: float
    count: int
    failure_limit: int


@dataclass(frozen=True)
class Gate:
    """One health check of a region after a deployment.

    http: `path` answers 200. websocket: with `expect_open`, a probe message
    published through the target arrives over `protocol` at `path` (the cable
    path); without, the cable path refuses the upgrade. memory: the region's
    front and cable processes hold at most `budget_mb` resident. `mode`: the
    mode being judged, which says where a probe on the machine publishes.
    """

    kind: GateKind
    path: str | None
    timing: GateTiming
    protocol: Protocol | None = None
    expect_open: bool = True
    budget_mb: float | None = None
    mode: Mode | None = None

    def describe(self) -> str:
        if self.kind == "http":
            return f"http: GET {self.path} answers 200"
        if self.kind == "memory":
            return f"memory: front and cable processes within {self.budget_mb:g} MB"
        if self.expect_open:
            return f"websocket: a probe published through the target arrives at {self.path} ({self.protocol} protocol)"
        return f"websocket: {self.path} refuses the upgrade (switch off)"


@dataclass(frozen=True)
class Deployment:
    """The operations and gates that take a region to `state`."""

    state: RegionState
    operations: tuple[Operation, ...]
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class Step:
    """One region's deployment within a rollout, with the quick rollback to use when its gates fail."""

    id: str
    stage: str | None
    key: RegionKey
    action: Action
    current: RegionState | None
    deployment: Deployment
    fallback: Deployment | None

    @property
    def desired(self) -> RegionState:
        return self.deployment.state


@dataclass(frozen=True)
class ScheduledStage:
    """A stage of the inventory placed on the calendar: it starts when the previous stage has baked."""

    name: str
    environment: str
    regions: tuple[str, ...]
    bake: str
    bake_seconds: int
    starts: datetime
    bake_ends: datetime
    status: str  # "done", "baking", "failed", "next" or "later"


@dataclass(frozen=True)
class RegionMemory:
    """One region's resident memory by process, before and after its step, from the inventory's budgets (MB)."""

    key: RegionKey
    before_mode: Mode | None  # None: nothing deployed yet (counted as the action_cable baseline)
    after_mode: Mode
    before: Mapping[str, float]  # "navigator", "cable_server", "redis"
    after: Mapping[str, float]

    @property
    def before_total(self) -> float:
        return sum(self.before.values())

    @property
    def after_total(self) -> float:
        return sum(self.after.values())


@dataclass(frozen=True)
class Plan:
    """Everything `orchestrate plan` shows and `rollout` executes; built without touching any target."""

    inventory: str
    target: str
    created: datetime
    schedule: tuple[ScheduledStage, ...]
    steps: tuple[Step, ...]
    memory: tuple[RegionMemory, ...]
