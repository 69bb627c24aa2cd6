"""The model of Navigator's request handling, checked against Showcase's own ord configuration."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from hub.yaml_loader import load_yaml_file
from tests.orchestrator.navigator_model import MAX_FLY_REPLAY_SIZE, NavigatorModel, Outcome, go_regex

FIXTURE = Path(__file__).parent / "fixtures" / "showcase" / "navigator.ord.yml"
SHARED_ORIGINAL = Path("/work/shared/data/showcase/navigator.ord.yml")
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def showcase() -> dict[str, Any]:
    return load_yaml_file(FIXTURE).data


@pytest.fixture(scope="module")
def ord_model(showcase: dict[str, Any]) -> NavigatorModel:
    return NavigatorModel.from_config(showcase)


def changed(config: dict[str, Any], **sections: Any) -> NavigatorModel:
    """The model of a copy of `config` with some top-level sections replaced."""
    return NavigatorModel.from_config({**copy.deepcopy(config), **sections})


def test_fixture_is_an_exact_copy_of_showcases_file():
    if not SHARED_ORIGINAL.exists():
        pytest.skip("the shared original is not on this machine")
    assert FIXTURE.read_bytes() == SHARED_ORIGINAL.read_bytes()


def test_showcase_config_loads_without_dropping_anything(showcase, ord_model):
    assert ord_model.skipped_patterns == ()
    assert len(ord_model.tenants) == len(showcase["applications"]["tenants"]) == 58
    assert ord_model.auth_enabled and ord_model.cable_enabled and not ord_model.maintenance
    index = ord_model.tenants[0]
    assert (index.name, index.path) == ("", "/showcase/")  # parser.go strips "/showcase/" from the path


def test_health_check_is_answered_before_auth(showcase):
    auth = copy.deepcopy(showcase["auth"])
    auth["public_paths"].remove("/up")
    model = changed(showcase, auth=auth)
    assert not model.is_public("/up")
    assert model.dispatch("/up") == Outcome("health", status=200)


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.1:51234", "[::1]:40000", "::1", "localhost:9999"])
def test_broadcast_is_accepted_from_local_peers_without_credentials(ord_model, peer):
    assert not ord_model.is_public("/_broadcast")
    assert ord_model.dispatch("/_broadcast", "POST", remote_addr=peer) == Outcome("broadcast")
    assert ord_model.dispatch("/_broadcast", "GET", remote_addr=peer) == Outcome("broadcast", status=405)


@pytest.mark.parametrize("peer", ["203.0.113.9", "203.0.113.9:443", "[2001:db8::1]:443", "10.0.0.1:9999"])
def test_broadcast_from_elsewhere_is_forbidden_even_with_credentials(ord_model, peer):
    outcome = ord_model.dispatch("/_broadcast", "POST", remote_addr=peer, authenticated=True)
    assert outcome == Outcome("forbidden", status=403)


def test_an_ord_event_runs_its_tenant_with_its_environment(ord_model):
    outcome = ord_model.dispatch("/showcase/2025/chicago/heats", authenticated=True)
    assert (outcome.kind, outcome.target) == ("tenant", "2025/chicago")
    assert outcome.tenant is not None and outcome.tenant.path == "/showcase/2025/chicago/"
    env = outcome.tenant.env
    assert env["RAILS_APP_SCOPE"] == "2025/chicago"
    assert env["DATABASE_URL"] == "sqlite3:///data/db/2025-chicago.sqlite3"
    assert env["RAILS_STORAGE"] == "/data/storage"
    assert env["RAILS_APP_DB"] == "2025-chicago"
    assert env["PIDFILE"] == "/rails/tmp/pids/2025-chicago.pid"


def test_an_event_needs_credentials(ord_model):
    assert ord_model.dispatch("/showcase/2025/chicago/heats") == Outcome("auth_required", status=401)


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/showcase/assets/x.js", True),  # prefix /showcase/assets/
        ("/showcase/regions/ord/cable", True),  # prefix /showcase/regions/ and an auth pattern
        ("/showcase/2025/raleigh/", True),  # studio index: auth pattern with action off
        ("/showcase/2025/chicago/logo.png", True),  # *.png
        ("/favicon.ico", True),
        ("/showcase/2025/chicago/heats", False),
        ("/showcase/demo", False),  # "/showcase/demo/" is a prefix: it needs the slash
        ("/showcase", False),
    ],
)
def test_public_paths_follow_should_exclude_from_auth(ord_model, path, public):
    assert ord_model.is_public(path) is public


def test_the_local_cable_is_served_and_other_regions_cables_are_replayed(ord_model):
    assert ord_model.dispatch("/showcase/regions/ord/cable") == Outcome("cable")
    assert ord_model.dispatch("/showcase/regions/iad/cable") == Outcome("replay", "region=iad", 307)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/showcase/2025/raleigh/x", "region=iad"),  # multi-event studio
        ("/showcase/2025/kennesaw", "region=iad"),  # single-event studio, no trailing slash
        ("/showcase/2025/kennesaw/heats", "region=iad"),
        ("/showcase/2025/boston/april/heats", "region=ewr"),
        ("/showcase/regions/nrt/demo/", "region=nrt"),
        ("/showcase/2025/raleigh/disney/heats.pdf", "app=smooth-pdf"),  # the PDF rule comes first
        ("/showcase/2025/chicago/heats.pdf", "app=smooth-pdf"),
        ("/showcase/2025/chicago/heats.xlsx", "app=smooth-pdf"),
    ],
)
def test_other_regions_and_printouts_are_replayed(ord_model, path, target):
    assert ord_model.dispatch(path, authenticated=True) == Outcome("replay", target, 307)


def test_a_multi_event_studio_index_is_not_replayed(ord_model):
    outcome = ord_model.dispatch("/showcase/2025/raleigh/")  # public, prerendered, served locally
    assert outcome.kind == "tenant" and outcome.tenant is not None and outcome.tenant.path == "/showcase/"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/", "/showcase/studios/"),
        ("/showcase/demo", "/showcase/regions/ord/demo/"),
        ("/showcase/demo/", "/showcase/regions/ord/demo/"),
        ("/showcase", "/showcase/"),  # root_path's automatic trailing slash
        ("/showcase/2025/chicago", "/showcase/2025/chicago/"),  # a tenant's automatic trailing slash
    ],
)
def test_redirects(ord_model, path, location):
    assert ord_model.dispatch(path, authenticated=True) == Outcome("redirect", location, 302)


def test_the_root_redirect_needs_no_credentials(ord_model):
    assert ord_model.dispatch("/") == Outcome("redirect", "/showcase/studios/", 302)


def test_the_demo_tenant_has_its_own_database_and_storage(ord_model):
    outcome = ord_model.dispatch("/showcase/regions/ord/demo/x")
    assert outcome.kind == "tenant" and outcome.target == "regions/ord/demo"
    assert outcome.tenant is not None and outcome.tenant.root == "/rails/"
    assert outcome.tenant.env["DATABASE_URL"] == "sqlite3:///demo/db/demo.sqlite3"
    assert outcome.tenant.env["RAILS_STORAGE"] == "/demo/storage/demo"
    assert outcome.tenant.env["RAILS_APP_DB"] == "demo"


def test_password_pages_are_proxied_to_rubix(ord_model):
    target = "https://rubix.intertwingly.net/showcase/password/reset"
    assert ord_model.dispatch("/showcase/password/reset") == Outcome("proxy", target)
    assert ord_model.dispatch("/showcase/password/reset?token=t").target == target + "?token=t"
    assert ord_model.dispatch("/showcase/studios/raleigh/request").target == (
        "https://rubix.intertwingly.net/showcase/studios/raleigh/request"
    )


def test_update_config_runs_the_cgi_script_only_on_post(ord_model):
    script = "/rails/script/update_configuration.rb"
    assert ord_model.dispatch("/showcase/update_config", "POST") == Outcome("cgi", script)
    assert ord_model.dispatch("/showcase/update_config", "post").kind == "cgi"  # strings.EqualFold
    assert ord_model.dispatch("/showcase/update_config", "GET").target == ""  # falls through to the index


@pytest.mark.parametrize("headers", [{"fly-replay-failed": "timeout"}, {"X-Navigator-Retry": "true"}])
def test_a_failed_or_retried_replay_serves_the_maintenance_page(ord_model, headers):
    outcome = ord_model.dispatch("/showcase/regions/iad/cable", headers=headers)
    assert outcome == Outcome("maintenance", status=503)


def test_only_a_retry_header_of_true_counts(ord_model):
    outcome = ord_model.dispatch("/showcase/regions/iad/cable", headers={"X-Navigator-Retry": "yes"})
    assert outcome.kind == "replay"


@pytest.mark.parametrize(
    ("method", "length", "replayed"),
    [
        ("POST", 2 * MIB, False),
        ("POST", MAX_FLY_REPLAY_SIZE, False),
        ("POST", MAX_FLY_REPLAY_SIZE - 1, True),
        ("POST", -1, False),  # no Content-Length on a method with a body
        ("PATCH", -1, False),
        ("GET", -1, True),
        ("DELETE", 0, True),
    ],
)
def test_large_or_unsized_bodies_are_not_replayed(ord_model, method, length, replayed):
    outcome = ord_model.dispatch("/showcase/2025/raleigh/x", method, authenticated=True, content_length=length)
    assert (outcome.kind == "replay") is replayed
    if not replayed:
        assert outcome.kind == "tenant" and outcome.target == ""  # the index tenant catches it


def test_a_declined_replay_skips_every_later_rule():
    config = {
        "routes": {"fly": {"replay": [{"path": "^/showcase/2025/x$", "region": "iad"}]}},
        "applications": {"tenants": [{"path": "/showcase/2025/x/"}]},
    }
    model = NavigatorModel.from_config(config)
    assert model.dispatch("/showcase/2025/x").kind == "replay"
    # Without the replay, the tenant's trailing-slash redirect would have answered (handler.go:314-324).
    assert model.dispatch("/showcase/2025/x", "POST", content_length=2 * MIB) == Outcome("not_found", status=404)


def test_rewrites_continue_with_the_rewritten_path(ord_model):
    assert ord_model.dispatch("/x.pdf", authenticated=True) == Outcome("replay", "app=smooth-pdf", 307)
    outcome = ord_model.dispatch("/assets/app.js")  # public by *.js, then rewritten under /showcase/
    assert outcome.kind == "tenant" and outcome.target == ""


@pytest.mark.parametrize("cable", [None, {}, {"enabled": None}, {"path": "/cable"}])
def test_the_cable_is_enabled_when_not_switched_off(cable):
    config: dict[str, Any] = {"applications": {"tenants": [{"path": "/"}]}}
    if cable is not None:
        config["cable"] = cable
    model = NavigatorModel.from_config(config)
    assert model.cable_enabled
    assert model.dispatch("/cable") == Outcome("cable")
    assert model.dispatch("/_broadcast", "POST", remote_addr="127.0.0.1") == Outcome("broadcast")


def test_with_the_cable_off_its_paths_fall_through(showcase):
    model = changed(showcase, cable={"enabled": False, "path": "/showcase/regions/ord/cable"})
    outcome = model.dispatch("/showcase/regions/ord/cable")
    assert outcome.kind == "tenant" and outcome.target == ""
    local = "127.0.0.1"
    assert model.dispatch("/_broadcast", "POST", remote_addr=local) == Outcome("auth_required", status=401)
    outcome = model.dispatch("/_broadcast", "POST", authenticated=True, remote_addr=local)
    assert outcome == Outcome("not_found", status=404)


def test_maintenance_mode_answers_what_no_earlier_step_does(showcase):
    model = changed(showcase, maintenance={"enabled": True, "page": "/503.html"})
    assert model.dispatch("/showcase/2025/chicago/heats", authenticated=True) == Outcome("maintenance", status=503)
    assert model.dispatch("/up").kind == "health"
    assert model.dispatch("/showcase/password/reset").kind == "proxy"
    assert model.dispatch("/showcase/regions/iad/cable").kind == "replay"


def test_a_health_check_without_a_response_goes_straight_to_the_app():
    config = {
        "server": {"health_check": {"path": "/up"}},
        "auth": {"enabled": True, "htpasswd": "/data/htpasswd"},
        "maintenance": {"enabled": True},
        "applications": {"tenants": [{"path": "/"}]},
    }
    model = NavigatorModel.from_config(config)
    assert model.dispatch("/up").kind == "tenant"
    assert model.dispatch("/other") == Outcome("auth_required", status=401)


@pytest.mark.parametrize(
    "auth",
    [
        None,
        {"enabled": False, "htpasswd": "/h"},
        {"enabled": True},  # no htpasswd file: main.go:100 loads nothing
        {"enabled": True, "htpasswd": "/h", "realm": "off"},
    ],
)
def test_auth_is_off_unless_enabled_with_a_file_and_a_realm_other_than_off(auth):
    config: dict[str, Any] = {"applications": {"tenants": [{"path": "/"}]}}
    if auth is not None:
        config["auth"] = auth
    model = NavigatorModel.from_config(config)
    assert not model.auth_enabled
    assert model.dispatch("/anything").kind == "tenant"


def test_public_paths_are_read_only_with_auth_enabled():
    auth = {"enabled": False, "htpasswd": "/h", "public_paths": ["/open/"], "auth_patterns": [{"pattern": "(?=x)"}]}
    model = NavigatorModel.from_config({"auth": auth})  # the lookahead is never compiled either
    assert not model.is_public("/open/x")


def test_public_paths_without_a_trailing_slash_match_exactly(ord_model):
    assert ord_model.is_public("/up") and not ord_model.is_public("/upload")
    assert ord_model.is_public("/showcase/index_date") and not ord_model.is_public("/showcase/index_date/x")


def test_only_auth_patterns_with_action_off_make_a_path_public():
    patterns = [{"pattern": "^/open/", "action": "off"}, {"pattern": "^/staff/", "action": "Staff"}]
    model = NavigatorModel.from_config({"auth": {"enabled": True, "htpasswd": "/h", "auth_patterns": patterns}})
    assert model.is_public("/open/x")
    assert not model.is_public("/staff/x")


def test_the_cable_path_needs_credentials_unless_it_is_public():
    model = NavigatorModel.from_config({"auth": {"enabled": True, "htpasswd": "/h"}})
    assert model.dispatch("/cable") == Outcome("auth_required", status=401)
    assert model.dispatch("/cable", authenticated=True) == Outcome("cable")


def test_root_path_gets_its_own_trailing_slash_redirect():
    model = NavigatorModel.from_config({"server": {"root_path": "/app"}})
    assert model.dispatch("/app") == Outcome("redirect", "/app/", 302)
    assert model.dispatch("/app/") == Outcome("not_found", status=404)


def test_public_path_globs_do_not_cross_slashes():
    public = ["/docs/*.html", "/dir/*\\"]  # the second ends in a lone backslash: ErrBadPattern
    model = NavigatorModel.from_config({"auth": {"enabled": True, "htpasswd": "/h", "public_paths": public}})
    assert model.is_public("/docs/a.html")
    assert not model.is_public("/docs/a/b.html")
    assert not model.is_public("/docs/a.html/x")
    assert not model.is_public("/dir/x\\")


def test_public_path_globs_with_classes_are_refused():
    with pytest.raises(ValueError, match=r"/v\[12\]/\*"):
        NavigatorModel.from_config({"auth": {"enabled": True, "htpasswd": "/h", "public_paths": ["/v[12]/*"]}})


@pytest.mark.parametrize(
    "pattern",
    [
        r"^/showcase/(?=2025)",  # lookahead
        r"^/showcase/(?!2025)",
        r"(?<=/showcase)/x",  # lookbehind
        r"^/(a)/\1$",  # backreference
        r"^/(?P<year>\d+)/(?P=year)$",
        r"^/a++$",  # possessive
        r"^/a{2}+$",
        r"^/(?>a)$",  # atomic group
        r"^/x\Z",  # Python's end of text; RE2 only has \z
        r"^/a{1001}$",
        r"(?x) ^/a",  # verbose flag
        r"^/a(?i)b",  # Go allows flags mid-pattern; Python 3.11 does not: not translated
        r"(?U)^/a+",  # Go's ungreedy flag: not translated
        r"^/\pL+$",  # RE2's Unicode classes: not translated
        r"^/[[:alpha:]]+$",  # POSIX class: Python would read a different set
    ],
)
@pytest.mark.parametrize("where", ["redirect", "rewrite", "replay", "proxy", "auth"])
def test_patterns_go_would_reject_or_read_differently_are_refused(pattern, where):
    configs: dict[str, dict[str, Any]] = {
        "redirect": {"routes": {"redirects": [{"from": pattern, "to": "/"}]}},
        "rewrite": {"routes": {"rewrites": [{"from": pattern, "to": "/"}]}},
        "replay": {"routes": {"fly": {"replay": [{"path": pattern, "region": "iad"}]}}},
        "proxy": {"routes": {"reverse_proxies": [{"path": pattern, "target": "http://localhost:1"}]}},
        "auth": {"auth": {"enabled": True, "htpasswd": "/h", "auth_patterns": [{"pattern": pattern, "action": "off"}]}},
    }
    with pytest.raises(ValueError) as raised:
        NavigatorModel.from_config(configs[where])
    assert repr(pattern) in str(raised.value)


def test_patterns_neither_compiles_are_dropped_and_listed():
    config = {
        "auth": {"enabled": True, "htpasswd": "/h", "auth_patterns": [{"pattern": "^/(unclosed", "action": "off"}]},
        "routes": {
            "redirects": [{"from": "^/old[", "to": "/new/"}],
            "fly": {"replay": [{"path": "^/elsewhere/"}]},  # neither app nor region
        },
        "applications": {"tenants": [{"path": "/"}]},
    }
    model = NavigatorModel.from_config(config)
    assert model.skipped_patterns == ("^/(unclosed", "^/old[", "^/elsewhere/")
    assert not model.is_public("/unclosed")
    assert model.dispatch("/old[", authenticated=True).kind == "tenant"
    assert model.dispatch("/elsewhere/x", authenticated=True).kind == "tenant"


def go(pattern: str) -> re.Pattern[str]:
    regex = go_regex(pattern)
    assert regex is not None, pattern
    return regex


def test_go_regex_reads_patterns_as_go_does():
    assert go(r"^/x$").search("/x\n") is None  # Go's $ is the end of the text
    assert go(r"^/x\z").search("/x")
    assert go(r"^/a{,2}$").search("/a{,2}")  # not a repeat in Go
    assert go(r"^/(?<year>\d+)/$").sub(r"\g<year>", "/2025/") == "2025"  # Go's spelling of a named group
    assert go(r"^/\d$").search("/\u0663") is None  # \d is ASCII in RE2
    assert go(r"(?i)^/ORD$").search("/ord")
    assert go(r"(?m)^/a$").search("/a\n/b")  # with m, $ is the end of a line in both
    assert go(r"^/(?:2025)/(?:a|b)(?:/.*)?$").search("/2025/b")
    assert go(r"^/a+?b*?$").search("/aab")  # lazy quantifiers are fine in both
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Python warns of nested sets and set operations Go does not have
        assert go(r"^/[[&&~~||]+$").search("/[&~|")


def test_replacements_expand_like_go():
    config = {
        "routes": {
            "redirects": [
                {"from": "^/old/(.*)$", "to": "/new/$1_x"},  # Go reads $1_x as the group named "1_x"
                {"from": "^/older/(.*)$", "to": "/new/${1}_x"},
                {"from": "^/cost/(.*)$", "to": "/new/$$$1"},
            ],
        },
    }
    model = NavigatorModel.from_config(config)
    assert model.dispatch("/old/abc").target == "/new/"
    assert model.dispatch("/older/abc").target == "/new/abc_x"
    assert model.dispatch("/cost/5").target == "/new/$5"


def test_tenant_names_and_env_are_built_as_parser_go_builds_them():
    config = {
        "applications": {
            "env": {"DATABASE_URL": "sqlite3:///db/${database}.sqlite3", "YEAR": "${year}", "OWNER": "base"},
            "tenants": [
                {
                    "path": "/demo/2025/boston",
                    "var": {"database": "2025-boston", "year": 2025},
                    "env": {"OWNER": "Boston", "TRACE": True},
                },
                {"path": "/showcase/2025/raleigh/", "var": {"year": None}},
            ],
        },
    }
    boston, raleigh = NavigatorModel.from_config(config).tenants
    assert (boston.name, boston.path) == ("/demo/2025/boston", "/demo/2025/boston/")
    assert dict(boston.env) == {
        "DATABASE_URL": "sqlite3:///db/2025-boston.sqlite3",
        "YEAR": "2025",
        "OWNER": "Boston",
        "TRACE": "true",  # yaml.v3 reads the scalar's text into a Go string
    }
    assert raleigh.name == "2025/raleigh"
    assert raleigh.env["DATABASE_URL"] == "sqlite3:///db/${database}.sqlite3"  # no var: left as is
    assert raleigh.env["YEAR"] == "<nil>"


def test_the_first_tenant_of_a_name_runs():
    tenants = [{"path": "x/", "env": {"WHO": "first"}}, {"path": "/showcase/x/", "env": {"WHO": "second"}}]
    config = {"applications": {"tenants": tenants}}  # both are named "x"
    outcome = NavigatorModel.from_config(config).dispatch("/showcase/x/page")
    assert outcome.tenant is not None and outcome.tenant.env["WHO"] == "first"


def test_proxy_upstreams():
    config = {
        "cable": {"enabled": False},
        "routes": {
            "reverse_proxies": [
                {"path": "^(/showcase/regions/ord/cable)$", "target": "http://localhost:28080$1", "websocket": True},
                {"prefix": "/api/", "target": "http://localhost:5000/v1", "strip_path": True},
                {"prefix": "/raw/", "target": "http://localhost:5001/base"},
            ],
        },
    }
    model = NavigatorModel.from_config(config)
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
    cable = "/showcase/regions/ord/cable"
    assert model.dispatch(cable, headers=upgrade) == Outcome("proxy", "ws://localhost:28080" + cable, websocket=True)
    assert model.dispatch(cable) == Outcome("proxy", "http://localhost:28080" + cable, websocket=True)
    assert model.dispatch("/api/items?x=1").target == "http://localhost:5000/v1/items?x=1"
    assert model.dispatch("/raw/items").target == "http://localhost:5001/base/raw/items"


def test_a_cgi_entry_without_a_script_is_dropped():
    config = {"server": {"cgi_scripts": [{"path": "/run"}]}, "applications": {"tenants": [{"path": "/"}]}}
    assert NavigatorModel.from_config(config).dispatch("/run", "POST").kind == "tenant"


def test_a_proxy_with_response_headers_answers_preflight_itself():
    cors = {"Access-Control-Allow-Origin": "*"}
    route = {"prefix": "/api/", "target": "http://localhost:5000", "response_headers": cors}
    model = NavigatorModel.from_config({"routes": {"reverse_proxies": [route]}})
    assert model.dispatch("/api/x", "OPTIONS") == Outcome("proxy", status=200)
    assert model.dispatch("/api/x").target == "http://localhost:5000/api/x"


def test_strip_path_on_a_regex_route_keeps_navigators_extra_slash():
    route = {"path": "^/svc(/.*)$", "target": "http://localhost:5000/base", "strip_path": True}
    model = NavigatorModel.from_config({"routes": {"reverse_proxies": [route]}})
    assert model.dispatch("/svc/x").target == "http://localhost:5000/base//x"  # "/" + $1 (proxy.go:145-153)


def test_an_empty_match_after_a_match_is_not_replaced_as_in_go():
    config = {
        "server": {"cgi_scripts": [{"path": "/a/", "script": "/bin/a"}]},
        "routes": {"rewrites": [{"from": "/*$", "to": "/"}]},  # re.sub would give "/a//"
    }
    assert NavigatorModel.from_config(config).dispatch("/a//") == Outcome("cgi", "/bin/a")


def test_redirect_locations_are_cleaned_as_net_http_does():
    redirects = [{"from": "^/a/(.*)$", "to": "/b//$1"}, {"from": "^/x/y$", "to": "z/"}]
    model = NavigatorModel.from_config({"routes": {"redirects": redirects}})
    assert model.dispatch("/a/c/../d/").target == "/b/d/"
    assert model.dispatch("/x/y").target == "/x/z/"  # a relative location is resolved against the path
