"""A real browser for the end-to-end tests: headless Chromium from Debian, driven over the
Chrome DevTools Protocol (CDP) with the `websockets` package, and a small HTTP server on
127.0.0.1 for the test pages in tests/e2e/pages/ and the official Action Cable client.

    chromium = Chromium(tmp_path / "profile", tmp_path / "chromium.log")
    chromium.start()
    page = chromium.open("http://127.0.0.1:PORT/page.html")
    wait_for(lambda: page.evaluate("document.title"), ...)
    page.screenshot(path)
    chromium.stop()
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from e2e_support import INSTALL_HINT, NODE_DIR, REPO
from tests.polling import wait_for

PAGES_DIR = Path(__file__).parent / "pages"
ACTIONCABLE_ESM = NODE_DIR / "node_modules" / "@rails" / "actioncable" / "app" / "assets" / "javascripts" / "actioncable.esm.js"
ARTIFACTS_DIR = REPO / "test-artifacts"

# The flags of a headless browser that talks to nothing but the test's own servers.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",  # Chromium picks the port and writes it to DevToolsActivePort
    "--window-size=900,640",
]


class CDPError(AssertionError):
    pass


class DevTools:
    """One CDP connection to the browser; pages are reached through flattened sessions on it."""

    def __init__(self, url: str) -> None:
        self._stack = ExitStack()
        self.socket: ClientConnection = self._stack.enter_context(connect(url, max_size=None, open_timeout=10))
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"no answer to {method} within {timeout}s")
            reply = json.loads(self.socket.recv(timeout=remaining))
            if reply.get("id") != command_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise CDPError(f"{method}: {reply['error']}")
            return dict(reply.get("result", {}))

    def close(self) -> None:
        self._stack.close()


class Page:
    """A browser tab, attached with its own CDP session."""

    def __init__(self, devtools: DevTools, target_id: str, session: str) -> None:
        self.devtools = devtools
        self.target_id = target_id
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.devtools.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (returned by value, as JSON)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}\n{self.console()}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def console(self) -> str:
        """What the page logged and threw so far (for failure messages)."""
        lines = []
        for event in self.devtools.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
                lines.append(f"console.{params.get('type')}: {text}")
            elif event.get("method") == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                lines.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        return "page console:\n" + "\n".join(lines)


class Chromium:
    """Debian's headless Chromium in a fresh profile, in a process group of its own."""

    def __init__(self, profile: Path, log_path: Path) -> None:
        self.profile = profile
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.devtools: DevTools | None = None

    def start(self, timeout: float = 60) -> None:
        executable = shutil.which("chromium")
        assert executable, "chromium is missing: run scripts/setup-env test (installs Debian's chromium)"
        self.profile.mkdir(parents=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its zygote, GPU and renderer processes share the group
            )
        active_port = self.profile / "DevToolsActivePort"
        process = self.process

        def endpoint() -> list[str] | None:
            """Port and path of the browser's DevTools WebSocket (none if Chromium exited)."""
            if process.poll() is not None:
                return []
            lines = active_port.read_text().splitlines() if active_port.exists() else []
            return lines if len(lines) == 2 else None

        wait_for(lambda: endpoint() is not None, timeout, "Chromium to write DevToolsActivePort", interval=0.05)
        lines = endpoint()
        if not lines:
            raise AssertionError(f"chromium exited with {process.returncode}:\n{self.log()}")
        port, path = lines
        self.devtools = DevTools(f"ws://127.0.0.1:{int(port)}{path}")

    def open(self, url: str, timeout: float = 30) -> Page:
        """A new tab showing `url`, once it has loaded."""
        assert self.devtools is not None, "start() first"
        target = self.devtools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.devtools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self.devtools, target, session)
        page.send("Runtime.enable")  # console messages and exceptions, for failure messages
        page.send("Page.enable")
        result = page.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigating to {url} failed: {result['errorText']}")
        # Until the new document commits, about:blank (also "complete") is what answers.
        wait_for(
            lambda: page.evaluate("location.href !== 'about:blank' && document.readyState === 'complete'"),
            timeout,
            f"{url} to load",
            interval=0.05,
        )
        return page

    def stop(self) -> None:
        if self.devtools is not None:
            try:
                self.devtools.send("Browser.close", timeout=10)
            except Exception:  # noqa: BLE001 (closing anyway: the process is ended below)
                pass
            self.devtools.close()
            self.devtools = None
        if self.process is None:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        # The browser's own process group (start_new_session), whatever of it is left.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class PageServer(ThreadingHTTPServer):
    """Serves tests/e2e/pages/*.html and /actioncable.esm.js (the official client) on 127.0.0.1."""

    daemon_threads = True

    def __init__(self) -> None:
        if not ACTIONCABLE_ESM.exists():
            raise AssertionError(f"{ACTIONCABLE_ESM.relative_to(REPO)} is missing: {INSTALL_HINT}")
        self.files = {"/actioncable.esm.js": ACTIONCABLE_ESM}
        self.files.update({f"/{page.name}": page for page in PAGES_DIR.glob("*.html")})
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer
    TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        self.server.requests.append(path)
        file = self.server.files.get(path)
        if file is None:
            self.send_error(404)
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", self.TYPES[file.suffix])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def artifact_path(name: str) -> Path:
    """Where a test keeps a screenshot: test-artifacts/ at the repository's root."""
    return ARTIFACTS_DIR / f"{name}.png"
