"""What Navigator v1.2.0 holds after reading a navigator.yml: its defaults applied, each tenant's environment
filled in (applications.env, then the tenant's own, ${var} from its var), and every list whose order does not
change what Navigator does written in one order, so that two configurations that load the same compare equal.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_ALTERNATION = re.compile(r"\(\?:([^()]*)\)")


def loaded(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (already without the keys Navigator ignores) as Navigator holds it."""
    view = copy.deepcopy(config)
    server = view.setdefault("server", {})
    server["listen"] = str(server.get("listen", "3000")).lstrip(":")
    if server.get("root_path"):
        server["root_path"] = server["root_path"].rstrip("/") + "/"
    cable = view.get("cable") or {}
    view["cable"] = {"enabled": cable.get("enabled", True) is not False}
    if view["cable"]["enabled"]:  # path and broadcast_path have no effect while it is off
        view["cable"] |= {"path": cable.get("path", "/cable"), "broadcast_path": cable.get("broadcast_path", "/_broadcast")}
    applications = view.get("applications") or {}
    applications.get("pools", {}).pop("max_size", None)  # parsed, never read
    env = applications.pop("env", {})
    applications["tenants"] = {tenant["path"]: _tenant(tenant, env) for tenant in applications.get("tenants", [])}
    auth = view.get("auth") or {}
    if "public_paths" in auth:  # any one that matches makes a path public: their order does not matter
        auth["public_paths"] = sorted(auth["public_paths"])
    if "auth_patterns" in auth:  # the same for the patterns whose action is off
        auth["auth_patterns"] = sorted((_canonical(rule["pattern"]), rule["action"]) for rule in auth["auth_patterns"])
    routes = view.get("routes") or {}
    replays = (routes.get("fly") or {}).get("replay")
    if replays:
        # Rules to another app keep their place; a region's rules match paths of that region only.
        apps = [{**rule, "status": rule.get("status", 307)} for rule in replays if "region" not in rule]
        regions = sorted((_canonical(rule["path"]), rule["region"], rule.get("status", 307))
                         for rule in replays if "region" in rule)
        routes["fly"]["replay"] = apps + regions
    view["managed_processes"] = {p.get("name", ""): p for p in view.get("managed_processes") or []}
    for group in (view.get("hooks") or {}).values():
        for entries in group.values():
            for hook in entries:
                hook.setdefault("args", [])
    return pruned(view)


def _tenant(tenant: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """parser.go:25-43, 230-233: applications.env with ${name} filled from the tenant's var, then its own env."""
    variables = tenant.get("var") or {}
    filled = {}
    for name, value in env.items():
        for key, raw in variables.items():
            value = str(value).replace("${" + str(key) + "}", str(raw))
        filled[name] = value
    result = {key: value for key, value in tenant.items() if key not in ("var", "env")}
    result["env"] = dict(sorted({**filled, **(tenant.get("env") or {})}.items()))
    return result


def _canonical(pattern: str) -> str:
    """The same regex with each `(?:a|b)` group's alternatives sorted and `\\-` written `-`: whether a path matches does not depend on either."""
    def sort(match: re.Match[str]) -> str:
        return "(?:" + "|".join(sorted(a.replace("\\-", "-") for a in match[1].split("|"))) + ")"

    return _ALTERNATION.sub(sort, pattern)


def pruned(value: Any) -> Any:
    """Empty mappings and lists removed: Navigator reads them as absent."""
    if isinstance(value, dict):
        kept = {key: pruned(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in ({}, [])}
    if isinstance(value, list):
        return [pruned(item) for item in value]
    return value


def differences(a: Any, b: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any, Any]]:
    """Each place where `a` and `b` differ, as (path, a's value, b's value); None where one has nothing."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str) for d in differences(a.get(key), b.get(key), (*path, key))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for index, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, (*path, index))]
    return [] if a == b else [(path, a, b)]
