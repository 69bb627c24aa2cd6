"""One sample of one machine of a watched region, taken the way the rollout's gates reach it.

A sample never wakes a machine: a stopped or suspended one is recorded with its
state only (it was looked at, and it was asleep). A started one is observed once
through each gate the region was deployed with (HTTP, and the WebSocket round
trip or its refusal), its memory read by process, and in the hub mode the hub's
counters read from its /metrics. Whatever cannot be read is recorded as such: a
region that cannot be reached fails its HTTP observation with the reason.
"""

from __future__ import annotations

import json
import math
from typing import Any

from orchestrator.model import Inventory
from orchestrator.rollout.gates import observe_once, resident_mb
from orchestrator.rollout.model import Machine, RegionKey, RegionState
from orchestrator.rollout.plan import expected_memory, gates_for
from orchestrator.targets.base import Target, TargetError
from orchestrator.targets.onhost import excerpt

MAX_COUNTERS = 64


def region_budget_mb(inventory: Inventory, key: RegionKey, state: RegionState) -> float:
    return round(sum(expected_memory(inventory, key, state.mode, state.websocket_enabled).values()), 1)


def take_sample(inventory: Inventory, target: Target, key: RegionKey, machine: Machine, state: RegionState) -> dict[str, Any]:
    """What `machine` of `key`, deployed as `state`, shows now, as the journal keeps it."""
    data: dict[str, Any] = {"state": machine.state, "budget_mb": region_budget_mb(inventory, key, state)}
    if machine.state != "started":
        return data
    signing = inventory.websocket.signing_secret_env
    try:
        for gate in gates_for(inventory, key, state, memory=False):
            observation = observe_once(gate, target, key, machine.id, signing)
            data[gate.kind] = {"ok": observation.ok, "evidence": observation.evidence}
        data.update(_memory(target, key, machine.id))
        if state.mode == "hub" and state.websocket_enabled:
            data.update(_counters(target, key, machine.id))
    except TargetError as error:
        data.setdefault("http", {"ok": False, "evidence": excerpt(str(error))})
        data["error"] = excerpt(str(error))
    return data


def _memory(target: Target, key: RegionKey, machine: str) -> dict[str, Any]:
    result = target.run(key, target.memory_command(key, machine))
    sizes = resident_mb(result.stdout) if result.ok else excerpt(result.stderr) or f"exit {result.exit_code}"
    if isinstance(sizes, str):
        return {"memory_error": sizes}
    return {"memory": {name: round(mb, 2) for name, mb in sizes.items()}, "memory_mb": round(sum(sizes.values()), 2)}


def _counters(target: Target, key: RegionKey, machine: str) -> dict[str, Any]:
    result = target.run(key, target.metrics_command(key, machine))
    if not result.ok:
        return {"counters_error": excerpt(result.stderr) or f"exit {result.exit_code}"}
    try:
        doc = json.loads(result.stdout)
    except (ValueError, RecursionError):
        return {"counters_error": f"not JSON: {excerpt(result.stdout)}"}
    if not isinstance(doc, dict):
        return {"counters_error": f"not an object: {excerpt(result.stdout)}"}
    counters = {str(name)[:64]: value for name, value in doc.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
    return {"counters": dict(sorted(counters.items())[:MAX_COUNTERS])}
