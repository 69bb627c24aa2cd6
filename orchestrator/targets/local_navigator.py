"""A region's navigator.yml as the real Navigator runs it on the local fleet.

The local fleet runs production's file as rendered, with only what would act outside the region's
home (STATE/fleet/<environment>/<region>/) or its loopback ports rewritten. `rehearsal_config`
touches the keys in REWRITES and nothing else (a test holds it to that); each says why. A key is
a path into the file (`[]`: every item of a list, `[cable]`: the item named cable); several keys
with one reason are separated by ", ".
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

# The run/ paths the rewrite points Navigator at; make_host_paths creates them.
PUBLIC_DIR = "public"
HTPASSWD = "htpasswd"
MANAGED_DIR = "managed"

REWRITES: dict[str, str] = {
    "server.listen": "the region's front port (run/ports.json) instead of production's port, which every region "
                     "shares; Navigator listens on it on every interface (it takes a port, not an address: "
                     "cmd/navigator/main.go:270)",
    "server.idle": "removed: suspend or stop asks Fly's machine API to act on the machine Navigator runs on "
                   "(internal/idle/signals_unix.go:53-70)",
    "server.cgi_scripts": "removed: they run the app's scripts as root (the tenant list's update) and reload from "
                          "/etc/navigator, neither of which is here (internal/cgi/handler.go:63-67, 246; "
                          "cgi/credentials_unix.go:13-17)",
    "server.static.public_dir": "run/public/, empty: the app's public files are not on this machine",
    "auth.htpasswd": "run/htpasswd, empty: the app's password file is not here; the public paths stay public and "
                     "every other path asks for a login nobody has",
    "hooks": "removed: they run the app's scripts (the sync from S3, the password file, the prerender), which are "
             "not here",
    "applications.tenants": "emptied: each tenant is the Rails app, which is not here. Navigator would start one "
                            "on the first request to its path (as pools.user, in a memory cgroup it makes when it "
                            "runs as root, process/cgroup_linux.go:105-112); without tenants such a request gets Navigator's "
                            "own 404 (server/handler.go:385-396)",
    "logging.format": "json: localctl reads from Navigator's log which managed process exited, and its output",
    "managed_processes[].command, managed_processes[].args, managed_processes[].env":
        "each process's local stand-in with the region's ports, and the environment localctl gives it "
        "(Navigator adds its own, as in production: process/manager.go:153-157)",
    "managed_processes[].working_dir": "run/managed/<name>/: production's directory (/rails, the image's tool "
                                       "copy) is not here, and localctl tells Navigator's children apart by it",
    "routes.reverse_proxies[cable].target": "the stand-in cable process's port instead of production's "
                                                 "localhost:28080, so Navigator proxies the cable path to it",
}

_HOST_AND_PORT = re.compile(r"^(?P<scheme>[a-z]+://)[^/$]+")


def rehearsal_config(
    rendered: Mapping[str, Any],
    *,
    run_dir: str,
    front_port: int,
    cable_port: int,
    managed: Mapping[str, tuple[Sequence[str], Mapping[str, str]]],
) -> dict[str, Any]:
    """`rendered` (a parsed navigator.yml) with REWRITES applied; `managed` gives each managed process's
    local stand-in as (argv, env) by name. `rendered` itself is left as it is."""
    config = copy.deepcopy(dict(rendered))
    server = config.setdefault("server", {})
    server["listen"] = front_port
    server.pop("idle", None)
    server.pop("cgi_scripts", None)
    if isinstance(server.get("static"), dict):
        server["static"]["public_dir"] = os.path.join(run_dir, PUBLIC_DIR)
    if isinstance(config.get("auth"), dict) and "htpasswd" in config["auth"]:
        config["auth"]["htpasswd"] = os.path.join(run_dir, HTPASSWD)
    config.pop("hooks", None)
    if isinstance(config.get("applications"), dict):
        config["applications"]["tenants"] = []
    config.setdefault("logging", {})["format"] = "json"
    for entry in config.get("managed_processes") or ():
        argv, env = managed[entry["name"]]
        entry.update(command=argv[0], args=list(argv[1:]), env=dict(env),
                     working_dir=os.path.join(run_dir, MANAGED_DIR, entry["name"]))
    for proxy in (config.get("routes") or {}).get("reverse_proxies") or ():
        if proxy.get("name") == "cable":
            proxy["target"] = _HOST_AND_PORT.sub(rf"\g<scheme>127.0.0.1:{cable_port}", str(proxy["target"]))
    return config


def make_host_paths(run_dir: str, managed_names: Sequence[str]) -> None:
    """The files and directories under run/ that the rewritten configuration names."""
    os.makedirs(os.path.join(run_dir, PUBLIC_DIR), exist_ok=True)
    for name in managed_names:
        os.makedirs(os.path.join(run_dir, MANAGED_DIR, name), exist_ok=True)
    with open(os.path.join(run_dir, HTPASSWD), "a", encoding="utf-8"):
        pass


def managed_name(working_dir: str) -> str | None:
    """The managed process whose working_dir (as the rewrite sets it) is `working_dir`, if any."""
    parent, name = os.path.split(working_dir)
    return name if os.path.basename(parent) == MANAGED_DIR else None
