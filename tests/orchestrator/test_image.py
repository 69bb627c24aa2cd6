"""One image per Fly app: its Dockerfile and fly.toml parsed, its entry point and the mode's processes run for real.

No Docker engine runs here, so the Dockerfile is not built: it is parsed, and
every stage, user, path and variable it uses is checked against what it
defines and against the rendered tree it copies from.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.orchestrator import dockerfile
from tests.orchestrator.conftest import (
    SHOWCASE_INVENTORY,
    region_config,
    rendered,
    showcase_with_anycable_image,
)
from tests.ports import redis_answers_ping, start_listening

DEPLOY = "deploy/production"


@pytest.fixture(scope="module")
def production() -> dict[str, str]:
    return rendered(SHOWCASE_INVENTORY)


def test_the_image_has_a_build_stage_and_a_final_stage_on_a_pinned_navigator(production):
    parsed = dockerfile.parse(production["Dockerfile"])
    assert [(stage.name, stage.base) for stage in parsed.stages] == [
        ("navigator", "samruby/navigator:v1.2.0"),
        ("base", "ruby:${RUBY_VERSION}-slim"),
        ("build", "base"),
        (None, "base"),
    ]
    assert parsed.global_args == {"RUBY_VERSION"}
    assert "latest" not in production["Dockerfile"]
    build_runs = [arguments for keyword, arguments, _ in parsed.stage("build").instructions if keyword == "RUN"]
    assert "build-essential" in build_runs[0] and "libyaml-dev" in build_runs[0]
    assert build_runs[-2:] == [
        "SECRET_KEY_BASE=DUMMY ./bin/rails assets:precompile",
        "SECRET_KEY_BASE=DUMMY RAILS_APP_DB=index RAILS_PROXY_HOST=${RAILS_PROXY_HOST} bundle exec rake prerender && rm -f db/index.sqlite3*",
    ]


def test_every_variable_the_dockerfile_uses_is_defined_before_it_is_used(production):
    parsed = dockerfile.parse(production["Dockerfile"])
    for stage in parsed.stages:
        for variable in dockerfile.VARIABLE.findall(stage.base):
            assert variable in parsed.global_args, f"FROM {stage.base}: {variable} is no global ARG"
        for keyword, arguments, defined in stage.instructions:
            if keyword in ("RUN", "COPY", "WORKDIR", "VOLUME", "USER"):
                undefined = set(dockerfile.VARIABLE.findall(arguments)) - defined
                assert not undefined, f"{keyword} {arguments}: {sorted(undefined)} undefined in stage {stage.name}"


def test_everything_the_dockerfile_copies_exists(production):
    parsed = dockerfile.parse(production["Dockerfile"])
    stage_names = {stage.name for stage in parsed.stages}
    app_files = {"Gemfile", "Gemfile.lock", "."}
    for stage in parsed.stages:
        for keyword, arguments, _ in stage.instructions:
            if keyword != "COPY":
                continue
            words = arguments.split()
            if words[0].startswith("--from="):
                assert words[0].removeprefix("--from=") in stage_names, arguments
                continue
            for source in words[:-1]:
                if source in app_files:
                    continue
                assert source.startswith(f"{DEPLOY}/"), f"COPY {source}: neither the app's nor a rendered file"
                relative = source.removeprefix(f"{DEPLOY}/").rstrip("/")
                assert any(path == relative or path.startswith(relative + "/") for path in production), source


def test_the_final_stage_creates_the_pools_user_and_owns_the_volume(production):
    final = dockerfile.parse(production["Dockerfile"]).final
    runs = " ".join(arguments for keyword, arguments, _ in final.instructions if keyword == "RUN")
    # Navigator looks the pools user up at every tenant start (user.Lookup); without it every start fails.
    pools = region_config(production)["applications"]["pools"]
    assert (pools["user"], pools["group"]) == ("rails", "rails")
    assert "groupadd --system rails " in runs
    assert re.search(r"useradd --system --gid rails .* rails\b", runs)
    assert re.search(r"mkdir -p /data db log storage tmp", runs)
    assert "chown -R rails:rails /data db log storage tmp" in runs
    (command,) = [arguments for keyword, arguments, _ in final.instructions if keyword == "CMD"]
    assert command == '["/etc/navigator/bin/start"]'
    copies = [arguments for keyword, arguments, _ in final.instructions if keyword == "COPY"]
    assert f"{DEPLOY}/navigator/ /etc/navigator/" in copies
    assert "--from=navigator /navigator /usr/local/bin/navigator" in copies


def test_the_image_carries_what_the_refresh_runs_on(production):
    final = dockerfile.parse(production["Dockerfile"]).final
    (install,) = [a for k, a, _ in final.instructions if k == "RUN" and "apt-get install" in a]
    for package in ("python3", "python3-jinja2", "python3-yaml", "sqlite3", "nats-server"):
        assert f" {package} " in install
    assert {"navigator/tool/orchestrator/__main__.py", "navigator/tool/orchestrator/schema/navigator.schema.json",
            "navigator/tool/orchestrator/templates/navigator.yml.j2", "navigator/tool/hub/cable.py",
            "navigator/inventory/showcase.yml", "navigator/inventory/showcases.yml"} <= set(production)


def test_fly_toml_deploys_one_app_with_its_volume_and_health_check(production):
    fly = tomllib.loads(production["fly.toml"])
    assert fly["app"] == "smooth"
    assert fly["primary_region"] == "iad"
    assert fly["build"] == {"dockerfile": "Dockerfile", "args": {"RAILS_PROXY_HOST": "smooth.fly.dev"}}
    assert fly["env"] == {"RAILS_PROXY_HOST": "smooth.fly.dev"}
    assert fly["mounts"] == [{
        "source": "smooth_volume", "destination": "/data", "auto_extend_size_threshold": 80,
        "auto_extend_size_increment": "1GB", "auto_extend_size_limit": "100GB",
    }]
    service = fly["http_service"]
    assert (service["internal_port"], service["force_https"], service["auto_stop_machines"]) == (9999, True, False)
    (check,) = service["checks"]
    assert (check["method"], check["path"]) == ("GET", "/up")
    assert fly["vm"] == [{"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048}]


def test_the_staging_app_is_its_own_image():
    staging = rendered(SHOWCASE_INVENTORY, environment="staging")
    assert tomllib.loads(staging["fly.toml"])["app"] == "smooth-nav"
    assert sorted(path.split("/")[2] for path in staging if path.startswith("navigator/regions/")) == ["iad"] * 4


@pytest.fixture
def image_dir(tmp_path: Path, production: dict[str, str]) -> Path:
    """The rendered navigator/ directory with its executable scripts, as the image holds it."""
    for path, text in production.items():
        if path.startswith("navigator/") and not path.startswith("navigator/tool/"):
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            if path.startswith("navigator/bin/"):
                target.chmod(0o755)
    return tmp_path / "navigator"


def fake_program(directory: Path, name: str, body: str) -> Path:
    """A stand-in on PATH for a program that cannot run here (Navigator, anycable-go): it reports how it was started."""
    directory.mkdir(exist_ok=True)
    program = directory / name
    program.write_text(f"#!/bin/sh\n{body}\n")
    program.chmod(0o755)
    return directory


def run_start(image_dir: Path, tmp_path: Path, region: str | None) -> subprocess.CompletedProcess[str]:
    bin_dir = fake_program(tmp_path / "fake-bin", "navigator", 'echo "navigator $*"')
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    if region is not None:
        env["FLY_REGION"] = region
    return subprocess.run([str(image_dir / "bin" / "start")], env=env, capture_output=True, text=True, timeout=30)


def test_start_boots_navigator_on_the_machine_s_region(image_dir, tmp_path):
    result = run_start(image_dir, tmp_path, "ord")
    assert result.returncode == 0, result.stderr
    boot = image_dir / "regions" / "ord" / "boot.yml"
    assert result.stdout.strip() == f"navigator {boot.resolve()}"
    assert boot.is_file()


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("lhr", "start: FLY_REGION=lhr is not a region of smooth, which serves ams, dfw, ewr, iad, nrt, ord, sjc, syd"),
        (None, "start: FLY_REGION is not set; smooth serves the regions ams, dfw, ewr, iad, nrt, ord, sjc, syd"),
        ("../ord", "start: FLY_REGION=../ord is not a region of smooth"),
    ],
)
def test_start_refuses_a_region_the_app_does_not_have(image_dir, tmp_path, region, message):
    result = run_start(image_dir, tmp_path, region)
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr.startswith(message)


def anycable_process(tmp_path: Path) -> dict:
    inventory = showcase_with_anycable_image(tmp_path)
    (process,) = region_config(rendered(inventory, mode="anycable"))["managed_processes"]
    return process


def run_process(process: dict, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start a managed process as Navigator does: its command and args, Navigator's environment plus its `env`."""
    return subprocess.run([process["command"], *process["args"]], env={**env, **process.get("env", {})},
                          capture_output=True, text=True, timeout=30)


def test_anycable_go_gets_the_secret_from_the_named_variable_and_no_telemetry(tmp_path):
    process = anycable_process(tmp_path)
    bin_dir = fake_program(tmp_path / "fake-bin", "anycable-go",
                           'echo "secret=$ANYCABLE_SECRET telemetry_off=$ANYCABLE_DISABLE_TELEMETRY args=$*"')
    result = run_process(process, {"PATH": f"{bin_dir}:/usr/bin:/bin", "CABLE_SIGNING_SECRET": "from-fly-secrets"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("secret=from-fly-secrets telemetry_off=true args=--presets none --host 127.0.0.1 ")


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_anycable_go_does_not_start_without_its_secret(tmp_path, value):
    """An empty ANYCABLE_SECRET would make anycable-go accept unauthenticated broadcasts and unsigned streams."""
    process = anycable_process(tmp_path)
    bin_dir = fake_program(tmp_path / "fake-bin", "anycable-go", "echo started")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if value is not None:
        env["CABLE_SIGNING_SECRET"] = value
    result = run_process(process, env)
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "CABLE_SIGNING_SECRET is not set" in result.stderr


def test_redis_runs_in_the_foreground_under_navigator(tmp_path):
    """With Debian's redis.conf (daemonize yes) the server would fork, and Navigator would take the exit for the end."""
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is missing: run scripts/setup-env test"
    (_, redis) = region_config(rendered(mode="action_cable"))["managed_processes"]
    config = tmp_path / "redis.conf"
    config.write_text(f"daemonize yes\ndir {tmp_path}\nsave \"\"\nappendonly no\nbind 127.0.0.1\n")
    args = [str(config) if arg == "/etc/redis/redis.conf" else arg for arg in redis["args"]]
    # A redis-server that forks exits at once: start_listening reports that as a failed start.
    server, _ = start_listening(lambda port: [redis_server, *args, "--port", str(port)], redis_answers_ping, "redis-server")
    try:
        assert server.poll() is None, "redis-server forked into the background"
    finally:
        server.terminate()
        server.wait(timeout=30)
