"""Every message the code can print when something is wrong has an entry in docs/troubleshooting.md.

The messages are read from orchestrator/ and hub/ by tests/docs/messages.py (its docstring says where it
looks). A message is found on the page by its longest literal part; a message whose literal parts are all
short must appear with every part in order. The few messages below are not for operators: they guard the
program's own invariants, or are not messages at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.preflight.findings import Code
from tests.docs.messages import Message, messages

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "troubleshooting.md"
PREFLIGHT_PAGE = REPO / "docs" / "commands" / "preflight.md"

# Keys (Message.key) of messages with no entry, and why.
NOT_FOR_OPERATORS: dict[str, str] = {
    "hub schema uses unsupported keywords": "the hub's own schema uses a keyword its checker lacks: a bug caught by the tests",
    "max_subscriptions_per_connection and max_subscriptions_per_client must be at least 1": "the schema requires at least 1 before the registry is built",
    "a unit is one directory name in the output directory, not": "render's publisher called with a bad unit: a bug",
    "not a relative path inside the unit": "render's publisher called with a bad file name: a bug",
    "wrote": "not an error: plan --html says where it wrote the page",
    "warning": "the prefix of every warning, each listed under its own message",
    "down": "status --json's problem field, listed with status",
    "drift": "status --json's problem field, listed with status",
    "last step": "status --json's problem field, listed with status",
    "REDIS_URL": "not a message: a name the preflight looks for in the app's source",
    "gate count must be at least 1, got": "the schema requires count >= 1",
    "gate failure_limit must be at least 0, got": "the schema requires failure_limit >= 0",
    "unknown gate kind": "the plan makes only known gates: a bug",
    "gate without a path": "the plan gives every HTTP and WebSocket gate a path: a bug",
    "memory gate without a budget": "the plan gives every memory gate a budget: a bug",
    "websocket gate at": "the plan gives every WebSocket gate a known protocol: a bug",
    "an actor's pid must be positive, not": "the journal's actor is this process: a bug",
    "the journal": "the journal used after it was closed: a bug",
    "the clock gave a time without a time zone": "the journal's clock is always UTC: a bug",
    "there is no run": "a run id the journal itself returned: a bug",
    "there is no step row": "a step row the journal itself returned: a bug",
    "only local #/$defs/ references": "the project's schemas use local references only: a bug caught by the tests",
    "are not supported": "the project's schemas use the supported keywords only: a bug caught by the tests",
    "usage: publish|memory|files|http|metrics|websocket ARGS (got": "the on-host probe called wrongly by this program: a bug",
    "not an environment variable name": "the schema allows only variable names: a bug",
    "the ssh target is closed": "the ssh target used after it was closed: a bug",
    "cannot write": "yaml_out: a value of a type the generator never writes: a bug (the targets' `cannot write` messages are listed)",
    "client": "not a message: the scope of a subscription limit, logged with subscription_rejected",
    "data received after EOF": "the hub's HTTP parser fed after the end it was given: a bug",
    "start_next_cycle before the request ended, or on a connection that must close": "the hub answered out of turn: a bug",
    "status out of range": "the hub writes only its own statuses: a bug",
    "response header is not a valid field": "the hub writes only its own headers: a bug",
    "takes at most": "a configuration record built with the wrong arguments: a bug",
    "unknown or repeated arguments": "a configuration record built with the wrong arguments: a bug",
    "missing arguments": "a configuration record built with the wrong arguments: a bug",
    "is immutable: use replace": "a configuration record changed in place: a bug",
    "is immutable": "a configuration record changed in place: a bug",
}


def page_text(path: Path) -> str:
    """The page as the messages are matched against it: whitespace collapsed, `\\|` in tables as `|`."""
    return " ".join(path.read_text(encoding="utf-8").replace("\\|", "|").split())


@pytest.fixture(scope="module")
def found() -> list[Message]:
    return messages()


def test_the_extraction_finds_messages_at_every_kind_of_sink(found: list[Message]) -> None:
    """A check of the reader itself: if it found nothing, every other test here would pass."""
    sinks = {message.sink.split(" ")[0] for message in found}
    assert {"raise", "problems.append", "report", "Observation(False)", "print", "log", "return"} <= sinks
    keys = {message.key for message in found}
    assert "--force needs --reason TEXT: the reason is recorded in the audit" in keys
    assert "start_failed" in keys and "reload_failed" in keys
    assert "a tab character: YAML indents with spaces only" in keys  # a module constant, resolved
    assert len(found) > 250


def test_every_message_has_an_entry(found: list[Message]) -> None:
    text = page_text(PAGE)
    missing = [message for message in found
               if not message.forwards and message.key not in NOT_FOR_OPERATORS and not message.found_in(text)]
    assert not missing, (
        f"messages with no entry in {PAGE.relative_to(REPO)} (add one, with its meaning and what to do):\n"
        + "\n".join(f"  {message.file}:{message.line} [{message.sink}] {message.shown()}" for message in missing)
    )


def test_the_exceptions_are_still_in_the_code(found: list[Message]) -> None:
    keys = {message.key for message in found}
    stale = sorted(set(NOT_FOR_OPERATORS) - keys)
    assert not stale, f"NOT_FOR_OPERATORS names messages the code no longer has: {stale}"


def test_every_preflight_code_is_explained() -> None:
    text = page_text(PREFLIGHT_PAGE)
    missing = [code.value for code in Code if not re.search(rf"\| `{re.escape(code.value)}` \|", text)]
    assert not missing, f"preflight codes with no row in {PREFLIGHT_PAGE.relative_to(REPO)}: {missing}"


def test_the_matching_is_neither_too_loose_nor_too_strict() -> None:
    long = Message("f.py", 1, "raise InputError", "\x00: no earlier deployment in the journal to go back to")
    assert long.found_in("`<region>: no earlier deployment in the journal to go back to` | ...")
    assert not long.found_in("no earlier deployment")
    short = Message("f.py", 1, "raise Failure", "POST \x00 answered \x00: \x00")
    assert short.found_in("`POST <url> answered <status>: <body>`")
    assert not short.found_in("answered POST")
