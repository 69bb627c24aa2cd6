"""What a started hub keeps out of its process: modules the configuration it runs has no use for."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from hub.config import Overrides, load
from hub.errors import InputError

# Runs the hub as `python -m hub` does, then lists the modules it holds once it has stopped.
PROBE = """
import os, sys
from hub.__main__ import main
code = main(sys.argv[1:])
with open(os.environ["HUB_MODULES"], "w") as out:
    out.write("\\n".join(name for name, module in sys.modules.items() if module is not None))
sys.exit(code)
"""
# None of these is needed by a hub without a broker: YAML is parsed in a child process, TLS ends in
# front of the hub, argparse's help width is found without shutil (and the compression modules), the
# hub runs on its own epoll loop (not asyncio, with logging, concurrent.futures, subprocess, threading),
# parses HTTP itself (not h11, with dataclasses and inspect), hashes with CPython's built-in SHA code
# (not hashlib, which loads every hash module), and imports typing only for type checkers.
NEVER_LOADED = ("yaml", "_yaml", "hub.yaml_loader", "pickle", "hub.broker", "ssl", "_ssl", "redis", "nats",
                "jsonschema", "shutil", "lzma", "bz2", "orchestrator", "asyncio", "logging", "concurrent",
                "subprocess", "threading", "h11", "dataclasses", "inspect", "typing", "hashlib", "hmac", "_hashlib",
                "traceback", "tokenize", "unicodedata", "stringprep")


def test_an_idle_hub_without_a_broker_loads_only_what_it_uses(start_hub, tmp_path: Path) -> None:
    modules = tmp_path / "modules.txt"
    hub = start_hub(navigator=None, hub="server: {listen: 0}\npublic_streams: true\n",
                    env={"HUB_MODULES": str(modules)}, launcher=(sys.executable, "-c", PROBE))
    assert hub.request("GET", "/up")[0] == 200
    hub.signal(signal.SIGHUP)  # a reload reads the files again
    hub.wait_log("reloaded")
    hub.signal(signal.SIGTERM)
    assert hub.proc.wait(20) == 0
    loaded = set(modules.read_text().split("\n"))
    assert {"hub.server", "hub.config", "hub.loop", "hub.http"} <= loaded
    assert loaded.isdisjoint(NEVER_LOADED), sorted(loaded & set(NEVER_LOADED))


def test_explicitly_tagged_values_reach_the_schema_as_they_were_parsed(tmp_path: Path) -> None:
    """The child that parses YAML hands over values marshal cannot carry (here a date) all the same."""
    (tmp_path / "hub.yml").write_text("server: {listen: 0}\nclient_ip_header: !!timestamp 2001-12-14\n")
    with pytest.raises(InputError) as error:
        load(None, Overrides(hub_config=str(tmp_path / "hub.yml")))
    assert error.value.problems == [f"{tmp_path / 'hub.yml'}: client_ip_header: expected string, got \"2001-12-14\""]


def test_parse_errors_from_the_child_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "hub.yml").write_text("server: {listen: 0}\nserver: {listen: 1}\n")
    with pytest.raises(InputError) as error:
        load(None, Overrides(hub_config=str(tmp_path / "hub.yml")))
    assert error.value.problems == [f"{tmp_path / 'hub.yml'}:2: duplicate key 'server' (first defined on line 1)"]


def test_a_file_that_takes_too_long_to_parse_is_refused_and_its_parser_killed(tmp_path: Path, monkeypatch) -> None:
    """The wait for the parsing child is bounded: past the limit the child is killed and reaped, and the file
    refused with its name (a running hub keeps its configuration, as for any failed reload)."""
    import hub.config

    (tmp_path / "hub.yml").write_text("server: {listen: 0}\n")
    monkeypatch.setattr(hub.config, "PARSE_SECONDS", 0.0)
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    with pytest.raises(RuntimeError, match=rf"^{re.escape(str(tmp_path / 'hub.yml'))}: parsing it took more than 0 s$"):
        load(None, Overrides(hub_config=str(tmp_path / "hub.yml")))
    assert len(forked) == 1
    with pytest.raises(ChildProcessError):  # reaped already: no zombie left behind
        os.waitpid(forked[0], os.WNOHANG)
