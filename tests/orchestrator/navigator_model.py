r"""What Navigator v1.2.0 (rubys/navigator 68f6844) does with one request, given a navigator.yml.

``from_config`` reads the parsed YAML as internal/config/parser.go does; ``dispatch`` takes the
steps of Handler.ServeHTTP (internal/server/handler.go:133-255) in order: health check; broadcast
path (before auth, local peers only); basic auth unless ``is_public``; cable path; rewrite rules in
parser.go's order (redirects, rewrites, fly replays, then automatic trailing-slash redirects of
root_path and every tenant); CGI; reverse proxies; maintenance; the tenant with the longest path
prefix; 404. ``path`` is Go's r.URL.Path (decoded), optionally with ``?query``; ``content_length``
is Go's Request.ContentLength (-1: unknown).

Patterns are Go RE2 run with Python's ``re``. One that RE2 rejects but Python accepts, or that they
read differently (backreferences, lookarounds, possessive quantifiers, atomic groups, \Z...),
raises ValueError naming it, as does RE2-only syntax not translated here (\pL, \Q..\E,
[[:alpha:]]). One neither compiles is dropped, as Navigator drops it, and listed in
``skipped_patterns``.

Left out on purpose: static files (public_dir, try_files, the normalize_trailing_slashes
redirect): the model cannot know which files exist, so a path only a static file would answer
falls through here. Bot detection (parser.go never copies it: v1.2.0 never blocks a bot). The
htpasswd file (``authenticated`` says whether credentials match), CGI allowed_users and script
existence, what follows once a tenant is chosen (start failure, startup timeout), a broadcast's
200/400 (status None). Unicode case folding under (?i), \s matching \v in Python, and float values
in var/env (refused).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MAX_FLY_REPLAY_SIZE = 1024 * 1024  # fly_replay.go:16 (config.MaxFlyReplaySize = 1000000 is unused)
LOCAL_PEERS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    path: str
    root: str | None
    env: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # health broadcast forbidden auth_required cable redirect replay cgi proxy maintenance tenant not_found
    target: str | None = None
    status: int | None = None
    websocket: bool = False
    tenant: Tenant | None = None


_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_FLAG_GROUP = re.compile(r"\(\?([A-Za-z-]*)([:)])")


def go_regex(pattern: str) -> re.Pattern[str] | None:
    """``pattern`` as Go's regexp reads it, or None when it does not compile (Navigator drops it)."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"regex {pattern!r}: {why}")

    out: list[str] = []
    i, in_class, multiline = 0, False, False
    while i < len(pattern):
        c, start = pattern[i], i
        if c == "\\":
            e = pattern[i + 1 : i + 2]
            if e.isdigit():
                raise refuse("backreference or octal escape (RE2 rejects \\1-\\9; Python reads \\12 as group 12)")
            if (e and e in "ZNuUpPQ") or pattern.startswith("x{", i + 1):
                side = "Python syntax that RE2 rejects" if e in "ZNuU" else "RE2 syntax not translated here"
                raise refuse(f"\\{e} is {side}")
            out.append(r"\Z" if e == "z" and not in_class else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if re.match(r"\[:\^?[a-z]+:\]", pattern[i:]):
                raise refuse("POSIX classes like [[:alpha:]] are not translated here")
            in_class = c != "]"
            out.append("\\" + c if c in "[&~|" else c)  # literal in Go; Python warns of set operations
            i += 1
            continue
        if c == "(" and pattern.startswith("?", i + 1):
            rest = pattern[i + 2 :]
            if rest.startswith(("=", "!", "<=", "<!")):
                raise refuse("lookaround (RE2 has none)")
            if rest.startswith((">", "(", "#", "P=", "P>")):
                raise refuse(f"(?{rest[:2]} is Python syntax that RE2 rejects")
            if flags := _FLAG_GROUP.match(pattern, i):
                if set(flags[1]) - set("ims-") or (flags[2] == ")" and (i > 0 or "-" in flags[1])):
                    raise refuse("flags RE2 lacks, or Go's U or mid-pattern flags, which are not translated here")
                multiline |= "m" in flags[1].split("-")[0]
            out.append("(?P" if rest.startswith("<") else "(?")  # Go also spells a named group (?<name>
            i += 2
            continue
        if c == "[":
            in_class = True
            i += 1 + pattern.startswith("^", i + 1)
            i += pattern.startswith("]", i)  # a leading ] is a literal in both
        elif c == "{" and (repeat := _REPEAT.match(pattern, i)):
            if any(int(n) > 1000 for n in repeat.groups() if n):
                raise refuse("RE2 rejects repeat counts over 1000")
            i = repeat.end()
        elif c in "*+?":
            i += 1
        else:
            # Go reads a brace that is not a repeat as a literal (Python reads {,n} as a repeat),
            # and its $ never matches before a final newline.
            out.append({"{": r"\{", "$": "$" if multiline else r"\Z"}.get(c, c))
            i += 1
            continue
        if c != "[" and pattern.startswith("+", i):  # after a quantifier (a lazy ? is read as one more)
            raise refuse("possessive quantifier (RE2 rejects it, Python 3.11 accepts it)")
        out.append(pattern[start:i])
    try:
        return re.compile("".join(out), re.ASCII)
    except re.error:
        return None


_TEMPLATE_REF = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


def _replace_all(regex: re.Pattern[str], text: str, template: str) -> str:
    """Go's ReplaceAllString: $1 ${1} $name ${name} $$ expand, a name as long as letters, digits and _
    go ($1_x is the group "1_x"), an unknown or unmatched group to nothing; unlike re.sub, an empty
    match right after a match is not replaced."""

    def expand(match: re.Match[str]) -> str:
        def ref(r: re.Match[str]) -> str:
            key = r[1] or r[2]
            if key is None:
                return "$"
            if key.isascii() and key.isdigit() and (key == "0" or key[0] != "0"):
                return (match.group(int(key)) or "") if int(key) <= match.re.groups else ""
            return (match.group(key) or "") if key in match.re.groupindex else ""

        return _TEMPLATE_REF.sub(ref, template)

    out, last, pos = [], 0, 0
    while pos <= len(text) and (match := regex.search(text, pos)):
        out.append(text[last : match.start()])
        if match.end() > last or match.start() == 0:
            out.append(expand(match))
        last, pos = match.end(), max(pos + 1, match.end())
    return "".join(out) + text[last:]


def _glob_match(pattern: str, name: str) -> bool:
    """path/filepath.Match on Unix: * and ? stop at '/', \\ escapes; [classes] are not modelled."""
    regex = []
    for escaped, char in re.findall(r"\\(.?)|(.)", pattern, re.DOTALL):
        if char == "[":
            raise ValueError(f"public path {pattern!r}: the model does not translate [classes]")
        if not escaped and not char:
            return False  # a trailing backslash: ErrBadPattern, no match
        regex.append({"*": "[^/]*", "?": "[^/]"}.get(char) or re.escape(escaped or char))
    return re.fullmatch("".join(regex), name, re.DOTALL) is not None


def _redirect_location(url: str, request_path: str) -> str:
    """What net/http's Redirect sends: a relative URL made absolute, the path cleaned, a trailing / kept."""
    if urlsplit(url).scheme or urlsplit(url).netloc:
        return url
    url, mark, query = (url if url.startswith("/") else request_path.rpartition("/")[0] + "/" + url).partition("?")
    cleaned = re.sub(r"^/+", "/", posixpath.normpath(url))  # path.Clean also folds a leading //
    return cleaned + ("/" if url.endswith("/") and not cleaned.endswith("/") else "") + mark + query


def _join(a: str, b: str) -> str:
    """httputil's singleJoiningSlash."""
    return a.removesuffix("/") + "/" + b.removeprefix("/")


def _peer_host(addr: str) -> str:
    """The host from net.SplitHostPort, or the whole address when it has no port (handler.go:162-165)."""
    split = re.fullmatch(r"\[([^\]]*)\]:[^:]*|([^:\[\]]*):[^:]*", addr)
    return addr if split is None else split[1] if split[1] is not None else split[2]


def _s(value: Any) -> str:
    """A YAML scalar as yaml.v3 reads it into a Go string, or as Go's %v prints it."""
    if not isinstance(value, (str, int, type(None))):
        raise ValueError(f"{value!r} is outside the model (Go would read or format it differently)")
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _fill(value: str, variables: Mapping[str, Any]) -> str:
    for name, raw in variables.items():  # Go's %v prints a YAML null as "<nil>"
        value = value.replace("${" + str(name) + "}", "<nil>" if raw is None else _s(raw))
    return value


def _get(config: Mapping[str, Any], key: str, kind: type = Mapping) -> Any:
    """config[key] if it is a mapping (or a list), else an empty one: Go's zero value."""
    return value if isinstance(value := config.get(key), kind) else [] if kind is list else {}


def _with_slash(path: str) -> str:
    return path if path == "" or path.endswith("/") else path + "/"


class NavigatorModel:
    tenants: tuple[Tenant, ...]
    skipped_patterns: tuple[str, ...]  # what Navigator drops at load: invalid patterns, replays without a target

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NavigatorModel:
        return cls(config)

    def __init__(self, config: Mapping[str, Any]) -> None:
        server, cable, auth = _get(config, "server"), _get(config, "cable"), _get(config, "auth")
        routes, apps = _get(config, "routes"), _get(config, "applications")
        skipped: list[str] = []

        def compiled(pattern: Any) -> re.Pattern[str] | None:
            if (regex := go_regex(_s(pattern))) is None:
                skipped.append(_s(pattern))
            return regex

        health = _get(server, "health_check")
        self._health_path = _s(health.get("path"))
        response = health.get("response")
        self._health_status = int(response.get("status") or 0) if isinstance(response, Mapping) else None

        enabled = cable.get("enabled")
        self.cable_enabled = True if enabled is None else bool(enabled)  # absent means on (parser.go:127-131)
        self.cable_path = _s(cable.get("path")) or "/cable"
        self.broadcast_path = _s(cable.get("broadcast_path")) or "/_broadcast"

        # main.go:100 loads htpasswd only with enabled and a file; BasicAuth.IsEnabled also wants realm != "off".
        auth_on = bool(auth.get("enabled"))
        self.auth_enabled = auth_on and bool(_s(auth.get("htpasswd"))) and _s(auth.get("realm")) != "off"
        self._public_paths = [_s(p) for p in _get(auth, "public_paths", list)] if auth_on else []  # parser.go:154
        for glob in (p for p in self._public_paths if "*" in p and not p.startswith("*")):
            _glob_match(glob, "")  # refuses at load a glob the model cannot read
        self._auth_patterns: list[tuple[re.Pattern[str], str]] = []
        for entry in _get(auth, "auth_patterns", list) if auth_on else []:
            if (regex := compiled(entry.get("pattern"))) is not None:
                self._auth_patterns.append((regex, _s(entry.get("action"))))

        rules: list[tuple[re.Pattern[str], str, str]] = []  # (regex, replacement, flag) as parser.go builds them
        for key, flag in (("redirects", "redirect"), ("rewrites", "last")):
            for entry in _get(routes, key, list):
                if (regex := compiled(entry.get("from"))) is not None:
                    rules.append((regex, _s(entry.get("to")), flag))
        for entry in _get(_get(routes, "fly"), "replay", list):
            target = f"app={_s(entry['app'])}" if _s(entry.get("app")) else _s(entry.get("region"))
            if (regex := compiled(entry.get("path"))) is not None and not target:
                skipped.append(_s(entry.get("path")))  # parser.go:310-311: a replay without app or region is dropped
            elif regex is not None:
                rules.append((regex, "", f"fly-replay:{target}:{int(entry.get('status') or 307)}"))

        tenants = []
        for entry in _get(apps, "tenants", list):
            path, env = _s(entry.get("path")), {}
            if isinstance(apps.get("env"), Mapping):  # ${var} filled from the tenant's var (parser.go:25-43)
                env = {str(k): _fill(_s(v), _get(entry, "var")) for k, v in apps["env"].items()}
            env.update({str(k): _s(v) for k, v in _get(entry, "env").items()})
            name = path.removeprefix("/showcase/").removesuffix("/")  # parser.go:212-213 hard-codes /showcase/
            tenants.append(Tenant(name, _with_slash(path), _s(entry.get("root")) or None, MappingProxyType(env)))
        self.tenants = tuple(tenants)

        root_path = _with_slash(_s(server.get("root_path")))
        for path in ([root_path] if root_path not in ("", "/") else []) + [t.path for t in tenants]:
            rules.append((re.compile(r"\A" + re.escape(path.removesuffix("/")) + r"\Z"), path, "redirect"))
        self._rules = tuple(rules)

        # By path, a later entry winning (handler.go:584); cgi.NewHandler refuses an empty script.
        self._cgi: dict[str, tuple[str, str]] = {}
        for entry in _get(server, "cgi_scripts", list):
            if _s(entry.get("script")):
                self._cgi[_s(entry.get("path"))] = (_s(entry.get("script")), _s(entry.get("method")))

        proxies = _get(routes, "reverse_proxies", list)
        self._proxies = [(compiled(e["path"]) if _s(e.get("path")) else None, e) for e in proxies]
        self.maintenance = bool(_get(config, "maintenance").get("enabled"))
        self.skipped_patterns = tuple(skipped)

    def is_public(self, path: str) -> bool:
        """auth.ShouldExcludeFromAuth (internal/auth/auth.go:149-205)."""
        for public in self._public_paths:
            if public.startswith("*"):
                matched = path.endswith(public[1:])
            elif "*" in public:
                matched = _glob_match(public, path)
            else:
                matched = path.startswith(public) if public.endswith("/") else path == public
            if matched:
                return True
        return any(action == "off" and regex.search(path) for regex, action in self._auth_patterns)

    def dispatch(self, path: str, method: str = "GET", *, authenticated: bool = False,
                 remote_addr: str = "203.0.113.9", content_length: int = 0,
                 headers: Mapping[str, str] = MappingProxyType({})) -> Outcome:
        path, _, query = path.partition("?")
        header = {k.lower(): v for k, v in headers.items()}
        if self._health_path and path == self._health_path:
            if self._health_status is None:  # no synthetic response: straight to the app (handler.go:281-283)
                return self._tenant(path)
            return Outcome("health", status=self._health_status)
        if self.cable_enabled and path == self.broadcast_path:
            if _peer_host(remote_addr) not in LOCAL_PEERS:
                return Outcome("forbidden", status=403)
            return Outcome("broadcast", status=None if method == "POST" else 405)
        if self.auth_enabled and not authenticated and not self.is_public(path):
            return Outcome("auth_required", status=401)
        if self.cable_enabled and path == self.cable_path:
            return Outcome("cable")

        for regex, replacement, flag in self._rules:
            if not regex.search(path):
                continue
            if flag == "redirect":
                return Outcome("redirect", _redirect_location(_replace_all(regex, path, replacement), path), 302)
            if flag == "last":
                path = _replace_all(regex, path, replacement)
                continue
            # A replay Navigator declines ends the rules: handleRewrites returns HandleFlyReplay's
            # false (handler.go:314-324), so no later rule, trailing-slash redirects included, is tried.
            parts = flag.split(":")
            unsized_body = content_length == -1 and method in ("POST", "PUT", "PATCH")
            if len(parts) != 3 or content_length >= MAX_FLY_REPLAY_SIZE or unsized_body:
                break
            if header.get("fly-replay-failed") or header.get("x-navigator-retry") == "true":
                return Outcome("maintenance", status=503)  # fly_replay.go:57-69
            target = parts[1] if parts[1].startswith(("app=", "machine=")) else f"region={parts[1]}"
            return Outcome("replay", target, int(parts[2]))

        cgi = self._cgi.get(path)
        if cgi is not None and (not cgi[1] or cgi[1].lower() == method.lower()):
            return Outcome("cgi", cgi[0])
        for path_regex, route in self._proxies:
            if _s(route.get("path")):  # a path (regex) wins over a prefix, even one that does not compile
                matched = path_regex is not None and path_regex.search(path) is not None
            else:
                matched = bool(prefix := _s(route.get("prefix"))) and path.startswith(prefix)
            if matched:
                return self._proxy(path_regex, route, path, query, method, header)
        if self.maintenance:
            return Outcome("maintenance", status=503)
        return self._tenant(path)

    def _tenant(self, path: str) -> Outcome:
        matching = (t for t in self.tenants if t.path and path.startswith(t.path))
        best = max(matching, key=lambda t: len(t.path), default=None)  # the first of the longest
        if best is None:
            return Outcome("not_found", status=404)
        # The app is then looked up by name (process/webapp.go:101-140): the first tenant of that name runs.
        tenant = next(t for t in self.tenants if t.name == best.name)
        return Outcome("tenant", tenant.name, tenant=tenant)

    def _proxy(self, regex: re.Pattern[str] | None, route: Mapping[str, Any], path: str, query: str, method: str,
               header: Mapping[str, str]) -> Outcome:
        """The upstream URL, as handleHTTPProxy and handleWebSocketProxy build it (server/proxy.go:89-255)."""
        if method == "OPTIONS" and route.get("response_headers"):
            return Outcome("proxy", status=200)  # a CORS preflight Navigator answers itself (proxy.go:66-74)
        match = regex.search(path) if regex else None
        target = _s(route.get("target"))
        prefix, strip, substituted = _s(route.get("prefix")), bool(route.get("strip_path")), "$" in target
        if substituted and match:
            for i in range(1, match.re.groups + 1):  # "$1" is also replaced inside "$10" (proxy.go:101-104)
                target = target.replace("$" + chr(ord("0") + i), match.group(i) or "")
        url = urlsplit(target)
        stripped = "/" + path.removeprefix(prefix).removeprefix("/")
        if route.get("websocket") and header.get("connection", "").lower() == "upgrade" \
                and header.get("upgrade", "").lower() == "websocket":
            final = url.path if substituted else _join(url.path, stripped) if strip and prefix else path
            scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
            return Outcome("proxy", urlunsplit((scheme, url.netloc, final, query, "")), websocket=True)
        final = ""
        if substituted:
            final = url.path
        elif strip and prefix:
            final = _join(url.path, stripped)
        elif strip and match and match.re.groups:
            final = _join(url.path, "/" + (match.group(1) or ""))
        final = final or _join(url.path, path)  # httputil's director joins target and request paths
        joined_query = "&".join(q for q in (url.query, query) if q)
        websocket = bool(route.get("websocket"))
        return Outcome("proxy", urlunsplit((url.scheme, url.netloc, final, joined_query, "")), websocket=websocket)
