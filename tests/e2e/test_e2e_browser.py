"""A real browser against the real hub: headless Chromium (Debian's) opens a live-scores page,
Rails 6.1 broadcasts through the region's rendered adapter, and the page's DOM, read over the
Chrome DevTools Protocol, shows every broadcast; the hub restarts on the same port and the page
subscribes again by itself and shows the next one.

- `hub` mode: the page uses the official `@rails/actioncable` client and the named channel
  ScoresChannel, as Showcase's scores page does; the hub maps it through hub.yml's `channels`.
- `integrated` mode (the hub plays Navigator, `navigator_protocol: open`): the page speaks
  Navigator's own protocol, as Showcase's pages do with the turbo_cable gem.

Each test keeps a screenshot of its page in test-artifacts/ at the repository's root."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from browser import Chromium, Page, PageServer, artifact_path
from e2e_support import ServerProcess
from rails_region import (
    SHOWCASE_CHANNELS,
    SHOWCASE_INVENTORY,
    SIGNING_SECRET,
    SIGNING_SECRET_ENV,
    RailsApp,
    Region,
    booted,
    errors,
    hub_servers,
    rails_apps,
    render_region,
    showcase_copy,
)
from tests.polling import wait_for

SECRETS = {SIGNING_SECRET_ENV: SIGNING_SECRET}


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[Callable[[Region, dict[str, str]], ServerProcess]]:
    yield from hub_servers(tmp_path)


@pytest.fixture
def rails() -> Iterator[Callable[[Path, dict[str, str]], RailsApp]]:
    yield from rails_apps()


@pytest.fixture
def pages() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def dom_messages(page: Page) -> list[Any]:
    """The values the page appended to its list, read from the DOM (each item is the JSON of one)."""
    texts = page.evaluate("Array.from(document.querySelectorAll('#messages li'), item => item.textContent)")
    return [json.loads(text) for text in texts]


def dom_subscribed(page: Page) -> int:
    return int(page.evaluate("document.getElementById('subscribed').textContent"))


def wait_dom(page: Page, condition: Callable[[Page], bool], timeout: float, what: str) -> None:
    try:
        wait_for(lambda: condition(page), timeout, what, interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}\nDOM: {page.evaluate('document.body.innerText')!r}\n{page.console()}") from None


def restart(hub: ServerProcess) -> None:
    """SIGTERM (the hub tells its clients to reconnect), then the hub again on the same port."""
    port = hub.port
    hub.stop()
    assert hub.exited() and hub.process is not None and hub.process.returncode == 0
    hub.start()  # ServerProcess asks for the port it had: the page reconnects to the address it knows
    assert hub.port == port


def keep_screenshot(page: Page, name: str) -> None:
    path = page.screenshot(artifact_path(name))
    print(f"screenshot: {path}")


def test_action_cable_page_in_hub_mode_shows_broadcasts_and_resubscribes_after_a_hub_restart(
    tmp_path: Path, hubs, rails, pages: PageServer, chromium: Chromium
) -> None:
    inventory = showcase_copy(tmp_path / "inventory", SHOWCASE_CHANNELS)
    region = render_region(tmp_path / "out", "hub", inventory)
    assert region.hub_config["channels"]["ScoresChannel"] == {"stream": "live-scores-{database}", "signed": False}
    hub = hubs(region, SECRETS)
    app = booted(rails, region, hub, **SECRETS)
    stream = f"live-scores-{region.database}"
    scores = [
        {"heat": 1, "leader": "Zoë & Åsa", "score": 91.5},
        {"heat": 2, "leader": "Jürgen <b>", "score": 88},
        {"heat": 3, "leader": None, "final": True},
        {"heat": 4, "leader": "after the restart"},
    ]

    query = urlencode({"cable": f"ws://127.0.0.1:{hub.port}{region.cable_path}", "database": region.database})
    page = chromium.open(pages.url(f"/scores-actioncable.html?{query}"))
    wait_dom(page, lambda p: dom_subscribed(p) == 1, 30, "the page to subscribe to ScoresChannel")

    for score in scores[:3]:
        result, logs = app.broadcast(stream, score)
        assert (result, errors(logs)) == (True, [])
    wait_dom(page, lambda p: len(dom_messages(p)) >= 3, 15, "three broadcasts on the page")
    assert dom_messages(page) == scores[:3]

    restart(hub)
    # Action Cable's ConnectionMonitor reopens the socket some seconds after the disconnect.
    wait_dom(page, lambda p: dom_subscribed(p) == 2, 60, "the page to subscribe again after the hub restarted")
    result, logs = app.broadcast(stream, scores[3])
    assert (result, errors(logs)) == (True, [])
    wait_dom(page, lambda p: len(dom_messages(p)) >= 4, 15, "the fourth broadcast on the page")

    assert dom_messages(page) == scores
    assert page.evaluate("document.getElementById('state').textContent") == "connected"
    keep_screenshot(page, "browser-actioncable-hub-mode")


def test_navigator_protocol_page_in_integrated_mode_shows_broadcasts_and_resubscribes_after_a_restart(
    tmp_path: Path, hubs, rails, pages: PageServer, chromium: Chromium
) -> None:
    region = render_region(tmp_path / "out", "integrated", SHOWCASE_INVENTORY)
    assert region.hub_config["navigator_protocol"] == "open"
    hub = hubs(region, SECRETS)
    app = booted(rails, region, hub, **SECRETS)
    stream = f"live-scores-{region.database}"
    # What turbo-rails broadcasts: Turbo Stream HTML, the whole message a string.
    streams = [
        f'<turbo-stream action="replace" target="heat_{n}"><template><tr id="heat_{n}"><td>{n}</td>'
        f"<td>{leader}</td></tr></template></turbo-stream>"
        for n, leader in ((1, "Zoë &amp; Åsa"), (2, 'Jürgen "JJ"'), (3, "—"), (4, "after the restart"))
    ]

    query = urlencode({"cable": f"ws://127.0.0.1:{hub.port}{region.cable_path}", "stream": stream})
    page = chromium.open(pages.url(f"/scores-navigator.html?{query}"))
    wait_dom(page, lambda p: dom_subscribed(p) == 1, 30, "the page to subscribe to its stream")

    for content in streams[:3]:
        result, logs = app.turbo_broadcast([stream], content)
        assert (result, errors(logs)) == (True, [])
    wait_dom(page, lambda p: len(dom_messages(p)) >= 3, 15, "three broadcasts on the page")
    assert dom_messages(page) == streams[:3]

    restart(hub)
    wait_dom(page, lambda p: dom_subscribed(p) == 2, 60, "the page to subscribe again after the hub restarted")
    result, logs = app.turbo_broadcast([stream], streams[3])
    assert (result, errors(logs)) == (True, [])
    wait_dom(page, lambda p: len(dom_messages(p)) >= 4, 15, "the fourth broadcast on the page")

    assert dom_messages(page) == streams
    assert page.evaluate("document.getElementById('state').textContent") == "subscribed"
    keep_screenshot(page, "browser-navigator-integrated-mode")
