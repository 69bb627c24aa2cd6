"""The typed inventory: what every later step reads, with every default resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the CLI reads MODES from here before it knows whether any YAML will be loaded
    from hub.yaml_loader import LoadedYaml

Mode = Literal["action_cable", "anycable", "integrated", "hub"]
MODES: tuple[Mode, ...] = ("action_cable", "anycable", "integrated", "hub")
EnvironmentName = Literal["staging", "production"]

# The one placeholder the inventory's Navigator settings and tenant paths may use.
REGION_PLACEHOLDER = "{region}"


@dataclass(frozen=True)
class ShippedFile:
    """A file the inventory was read from, copied into the image so it can render again at run time."""

    name: str
    text: str


@dataclass(frozen=True)
class App:
    name: str
    root_path: str
    listen: int
    primary_region: str
    rails_root: str
    region_paths: str | None
    checkout: str | None = None  # the app's source tree, relative to the inventory (what preflight audits)

    def region_prefix(self, region: str) -> str | None:
        """The path prefix that belongs to `region` alone (its cable path, its demo), if the app has one."""
        return None if self.region_paths is None else self.region_paths.replace(REGION_PLACEHOLDER, region)


@dataclass(frozen=True)
class Image:
    ruby_version: str
    navigator_version: str
    deploy_dir: str
    config_dir: str
    data_dir: str
    build_packages: tuple[str, ...]
    packages: tuple[str, ...]
    build_commands: tuple[str, ...]
    prepare_commands: tuple[str, ...]
    writable_dirs: tuple[str, ...]
    env: Mapping[str, str]

    @property
    def navigator_image(self) -> str:
        return f"samruby/navigator:{self.navigator_version}"

    @property
    def active_config(self) -> str:
        """The configuration Navigator runs, written at run time (never part of the image)."""
        return f"{self.config_dir}/navigator.yml"


@dataclass(frozen=True)
class Vm:
    cpu_kind: str
    cpus: int
    memory_mb: int


@dataclass(frozen=True)
class Volume:
    name: str
    auto_extend_size_threshold: int | None
    auto_extend_size_increment: str | None
    auto_extend_size_limit: str | None


@dataclass(frozen=True)
class HttpService:
    force_https: bool
    auto_stop_machines: bool
    auto_start_machines: bool
    min_machines_running: int


@dataclass(frozen=True)
class SshSettings:
    """How the ssh target reaches an environment's hosts, and what it runs there."""

    hosts: Mapping[str, str]
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    config_path: str = "/etc/navigator/navigator.yml"
    state_dir: str = "/var/lib/cable-orchestrator"
    reload_command: str = "navigator -s reload"
    restart_command: str = "systemctl restart navigator"
    pid_file: str = "/tmp/navigator.pid"
    connect_timeout_seconds: float = 10.0
    command_timeout_seconds: float = 60.0
    max_connections: int = 4
    front_port: int | None = None  # the front's port on the host's loopback; None: app.listen
    front_ports: Mapping[str, int] | None = None  # per region, before front_port


@dataclass(frozen=True)
class Environment:
    name: EnvironmentName
    fly_app: str
    hostname: str | None
    regions: tuple[str, ...]
    primary_region: str
    vm: Vm
    volume: Volume | None
    http_service: HttpService
    build_args: Mapping[str, str]
    env: Mapping[str, str]
    ssh: SshSettings | None = None


@dataclass(frozen=True)
class Broker:
    """Where the cable servers of a region (hubs, or anycable-go) share broadcasts; secrets by the names of their
    environment variables. anycable-go uses kind, url, local and a Redis user and password, not prefix (it
    publishes each broadcast under the stream's own name) nor NATS credentials (it would log them)."""

    kind: Literal["nats", "redis"]
    url: str
    prefix: str = "cable-hub"
    user: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    local_port: int | None = None  # a nats-server managed process on each machine
    cluster_port: int = 6222


@dataclass(frozen=True)
class Region:
    code: str
    memory_mb: int | None
    websocket_enabled: bool | None
    mode: Mode | None
    # Fully resolved per mode when the region has budgets of its own.
    memory_budgets_mb: Mapping[Mode, MemoryBudget] | None = None
    machines: int = 1
    broker: Broker | None = None
    watch_rules: tuple[WatchRule, ...] | None = None  # instead of rollout.watch.rules


@dataclass(frozen=True)
class Tenant:
    year: int
    studio: str
    event: str | None
    region: str
    name: str
    owner: str
    logo: str | None
    locale: str | None
    has_events: bool

    @property
    def database(self) -> str:
        return "-".join(self._parts)

    @property
    def scope(self) -> str:
        return "/".join(self._parts)

    def path(self, root_path: str) -> str:
        return f"{root_path}/{self.scope}/"

    @property
    def _parts(self) -> list[str]:
        return [str(self.year), self.studio] + ([self.event] if self.event else [])


@dataclass(frozen=True)
class FixedTenant:
    """The index or the per-region demo tenant, as the inventory describes it."""

    path: str
    database: str
    root: str | None
    env: Mapping[str, str]
    public: bool


@dataclass(frozen=True)
class Tenants:
    events: tuple[Tenant, ...]
    runtime_file: str | None
    env: Mapping[str, str]
    default_logo: str | None
    index: FixedTenant | None
    demo: FixedTenant | None
    prerendered_studio_indexes: bool
    public_event_paths: tuple[str, ...]


@dataclass(frozen=True)
class ChannelMapping:
    name: str
    stream: str
    signed: bool


@dataclass(frozen=True)
class WebSocket:
    enabled: bool
    mode: Mode
    cable_path: str
    broadcast_path: str
    public_path: bool
    public_streams: bool
    turbo_streams: bool
    signing_secret_env: str
    broadcast_key_env: str | None
    channels: tuple[ChannelMapping, ...]
    streams: tuple[str, ...] = ()  # what the pages subscribe to by name (templates)
    cable_ready: bool = False  # pages subscribe to CableReady::Stream (anycable-go gets --cable_ready)

    def cable_path_for(self, region: str) -> str:
        return self.cable_path.replace(REGION_PLACEHOLDER, region)


@dataclass(frozen=True)
class Hook:
    command: str
    args: tuple[str, ...]
    timeout: str | None


@dataclass(frozen=True)
class RuntimeConfig:
    """How the image keeps a region's navigator.yml current while it runs."""

    sync: tuple[Hook, ...]
    refresh_cgi: tuple[str, ...]
    refresh_timeout: str


@dataclass(frozen=True)
class ActionCableMode:
    port: int
    redis_url: str
    redis_config: str
    env: Mapping[str, str]


@dataclass(frozen=True)
class AnyCableMode:
    image: str | None
    port: int
    broadcast_port: int
    extra_args: tuple[str, ...]
    broker: Broker | None = None  # every anycable region's pub/sub, unless the region has its own


@dataclass(frozen=True)
class IntegratedMode:
    max_connections: int
    max_message_bytes: int


@dataclass(frozen=True)
class HubMode:
    """The hub as a managed process behind Navigator, on a loopback port."""

    port: int
    max_connections: int
    max_message_bytes: int
    broker: Broker | None = None
    # Who a client is, to the hub's per-client limits: the header Fly's proxy sets to the client's address.
    client_ip_header: str = "Fly-Client-IP"


@dataclass(frozen=True)
class MemoryBudget:
    navigator: float
    cable_server: float
    redis: float
    broker: float = 0.0  # a local nats-server, where a region runs one

    @property
    def total(self) -> float:
        return self.navigator + self.cable_server + self.redis + self.broker


@dataclass(frozen=True)
class HealthCheck:
    path: str
    interval_seconds: float
    timeout_seconds: float
    deadline_seconds: float
    failure_limit: int
    count: int = 1


@dataclass(frozen=True)
class Stage:
    name: str
    environment: EnvironmentName
    regions: tuple[str, ...]
    bake: str


WatchRuleKind = Literal["consecutive_failures", "memory_trend", "counter_rate"]


@dataclass(frozen=True)
class WatchRule:
    """One analysis rule of a watched bake; the fields a kind does not use keep their defaults."""

    kind: WatchRuleKind
    gate: str = ""
    count: int = 3
    window_seconds: float = 3600.0
    counter: str = ""
    max_per_minute: float = 0.0

    def describe(self) -> str:
        if self.kind == "consecutive_failures":
            return f"{self.count} {self.gate} failures in a row"
        if self.kind == "memory_trend":
            return f"memory trend over {self.window_seconds:g} s"
        return f"{self.counter} over {self.max_per_minute:g}/min in {self.window_seconds:g} s"


@dataclass(frozen=True)
class WatchSettings:
    interval_seconds: float
    max_gap_seconds: float
    samples_per_region: int
    rules: tuple[WatchRule, ...]


@dataclass(frozen=True)
class Rollout:
    health_check: HealthCheck
    stages: tuple[Stage, ...]
    parallel: int = 4
    max_failures: int = 1
    state_dir: str | None = None
    target: str = "local"
    navigator: str | None = None  # the local target's front; None: found as localctl.find_navigator says
    # Set when the inventory has rollout.watch: bakes are watched, and promotion needs a watched bake.
    watch: WatchSettings | None = None


@dataclass(frozen=True)
class RegionSettings:
    """What one region of one environment runs, after overrides."""

    environment: Environment
    region: Region
    mode: Mode
    websocket_enabled: bool

    @property
    def memory_mb(self) -> int:
        return self.region.memory_mb or self.environment.vm.memory_mb

    @property
    def pool_max_size(self) -> int:
        """Showcase's rule: 6 plus the whole GiB of MemTotal, which the kernel keeps a little under the VM size."""
        return 6 + (self.memory_mb - 1) // 1024


@dataclass(frozen=True)
class Inventory:
    name: str
    source_text: str
    tenant_list: ShippedFile | None
    located: LoadedYaml
    app: App
    image: Image
    environments: dict[str, Environment]
    regions: dict[str, Region]
    tenants: Tenants
    websocket: WebSocket
    navigator: Mapping[str, Any]
    runtime: RuntimeConfig
    action_cable: ActionCableMode
    anycable: AnyCableMode
    integrated: IntegratedMode
    hub: HubMode
    memory_budgets_mb: dict[Mode, MemoryBudget]
    rollout: Rollout

    def settings(
        self,
        environment: str,
        region: str,
        mode: Mode | None = None,
        websocket_enabled: bool | None = None,
    ) -> RegionSettings:
        """Mode and switch for one region: command-line override, then region override, then default."""
        region_entry = self.regions[region]
        resolved_mode = mode or region_entry.mode or self.websocket.mode
        if websocket_enabled is None:
            websocket_enabled = (
                region_entry.websocket_enabled
                if region_entry.websocket_enabled is not None
                else self.websocket.enabled
            )
        return RegionSettings(self.environments[environment], region_entry, resolved_mode, websocket_enabled)

    def broker_for(self, region: str, mode: Mode = "hub") -> Broker | None:
        """The broker the region's cable servers share broadcasts through: its own, else the mode's
        (modes.anycable.broker in anycable mode, modes.hub.broker otherwise)."""
        default = self.anycable.broker if mode == "anycable" else self.hub.broker
        return self.regions[region].broker or default

    def secret_env_names(self) -> tuple[str, ...]:
        """Every environment variable the inventory names for a secret: the WebSocket's and the brokers'."""
        brokers = [self.hub.broker, self.anycable.broker, *(region.broker for region in self.regions.values())]
        names = [self.websocket.signing_secret_env, self.websocket.broadcast_key_env,
                 *(name for broker in brokers if broker for name in (broker.password_env, broker.token_env))]
        return tuple(dict.fromkeys(name for name in names if name))

    def watch_rules(self, region: str) -> tuple[WatchRule, ...]:
        own = self.regions[region].watch_rules
        if own is not None:
            return own
        return self.rollout.watch.rules if self.rollout.watch else ()

    def memory_budget(self, region: str, mode: Mode) -> MemoryBudget:
        own = self.regions[region].memory_budgets_mb
        return own[mode] if own else self.memory_budgets_mb[mode]

    def tenants_in(self, region: str) -> list[Tenant]:
        return sorted(
            (tenant for tenant in self.tenants.events if tenant.region == region),
            key=lambda tenant: (tenant.year, tenant.studio, tenant.event or ""),
        )
