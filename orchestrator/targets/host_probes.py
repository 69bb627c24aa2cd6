"""The command lines of the probes that run on a region's host or machine (orchestrator/targets/onhost.py).

Shared by the ssh target (run on the host over SSH) and the fly target (run on
each machine through `fly ssh console`). Every probe is `python3 -c <program>`
with the standard library only; secrets are named, never passed.
"""

from __future__ import annotations

from orchestrator.model import Inventory
from orchestrator.render.modes import broadcast_url
from orchestrator.rollout.model import Gate
from orchestrator.targets.onhost import program

REMOTE_PYTHON = "python3"
# Probes are small; the gates bound them further by their own timeout.
PROBE_TIMEOUT_SECONDS = 15.0


def publish_route(inventory: Inventory, front_port: int, mode: str) -> tuple[str, str, str, str]:
    """(kind, url, key_env, secret_env): where and how the region's Rails app publishes a broadcast in `mode`."""
    websocket = inventory.websocket
    key_env = websocket.broadcast_key_env or ""
    if mode == "integrated":
        return "http", f"http://127.0.0.1:{front_port}{websocket.broadcast_path}", key_env, ""
    if mode == "hub":  # straight to the hub's loopback port, as the Rails adapter does
        return "http", broadcast_url(inventory, "hub"), key_env, ""
    if mode == "anycable":  # anycable-go derives its broadcast key from the signing secret
        return "anycable", broadcast_url(inventory, "anycable"), key_env, websocket.signing_secret_env or ""
    # action_cable: Rails' redis adapter; the generated cable.yml sets no channel prefix
    return "redis", inventory.action_cable.redis_url, "", ""


def publish_argv(inventory: Inventory, front_port: int, mode: str, stream: str, data_json: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(argv, env_names) of one broadcast posted on the host, where the region's Rails app would post it in `mode`."""
    kind, url, key_env, secret_env = publish_route(inventory, front_port, mode)
    argv = (REMOTE_PYTHON, "-c", program(), "publish", kind, url, stream, data_json, key_env, secret_env,
            f"{PROBE_TIMEOUT_SECONDS:g}")
    return argv, tuple(name for name in (key_env, secret_env) if name)


def memory_argv(pid_file: str) -> tuple[str, ...]:
    """Resident bytes of the front (its pid in `pid_file`) and its cable processes, as JSON."""
    return (REMOTE_PYTHON, "-c", program(), "memory", pid_file)


def metrics_argv(inventory: Inventory) -> tuple[str, ...]:
    """The hub's counters and gauges from its /metrics on the host's loopback, as JSON."""
    url = f"http://127.0.0.1:{inventory.hub.port}/metrics"
    return (REMOTE_PYTHON, "-c", program(), "metrics", url, f"{PROBE_TIMEOUT_SECONDS:g}")


def gate_argv(inventory: Inventory, front_port: int, mode: str, gate: Gate, timeout: float) -> tuple[str, ...]:
    """One observation of an http or websocket gate through the front on the host's loopback, printed as JSON."""
    assert gate.path is not None
    if gate.kind == "http":
        return (REMOTE_PYTHON, "-c", program(), "http", f"http://127.0.0.1:{front_port}{gate.path}", f"{timeout:g}")
    kind, url, key_env, secret_env = publish_route(inventory, front_port, mode)
    return (REMOTE_PYTHON, "-c", program(), "websocket", f"ws://127.0.0.1:{front_port}{gate.path}", str(gate.protocol),
            "open" if gate.expect_open else "refused", f"{timeout:g}", inventory.websocket.signing_secret_env or "",
            kind, url, key_env, secret_env)
