"""The typed inventory: what every later step reads, with every default resolved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["action_cable", "anycable", "integrated"]
MODES: tuple[Mode, ...] = ("action_cable", "anycable", "integrated")
EnvironmentName = Literal["staging", "production"]


@dataclass(frozen=True)
class Pool:
    default_memory_limit: str
    start_port: int
    timeout: str
    user: str
    group: str


@dataclass(frozen=True)
class App:
    name: str
    root_path: str
    listen: int
    primary_region: str
    rails_root: str
    database_dir: str
    ruby_version: str
    navigator_image: str
    pool: Pool
    idle_timeout: str


@dataclass(frozen=True)
class Environment:
    name: EnvironmentName
    fly_app: str
    hostname: str | None
    regions: tuple[str, ...]


@dataclass(frozen=True)
class Region:
    code: str
    memory_mb: int
    websocket_enabled: bool | None
    mode: Mode | None

    @property
    def pool_max_size(self) -> int:
        """Showcase sizes the tenant pool at 6 plus the machine's RAM in GB."""
        return 6 + self.memory_mb // 1024


@dataclass(frozen=True)
class Tenant:
    year: int
    studio: str
    event: str | None
    region: str
    name: str

    @property
    def database(self) -> str:
        parts = [str(self.year), self.studio] + ([self.event] if self.event else [])
        return "-".join(parts)

    def path(self, root_path: str) -> str:
        parts = [root_path, str(self.year), self.studio] + ([self.event] if self.event else [])
        return "/".join(parts) + "/"


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
    public_streams: bool
    signing_secret_env: str
    broadcast_key_env: str | None
    channels: tuple[ChannelMapping, ...]

    def cable_path_for(self, region: str) -> str:
        return self.cable_path.replace("{region}", region)


@dataclass(frozen=True)
class ActionCableMode:
    port: int
    redis: bool
    redis_url: str
    redis_config: str


@dataclass(frozen=True)
class AnyCableMode:
    version: str
    sha256: str
    port: int
    broadcast_port: int
    extra_args: tuple[str, ...]


@dataclass(frozen=True)
class IntegratedMode:
    max_connections: int
    max_message_bytes: int


@dataclass(frozen=True)
class MemoryBudget:
    navigator: float
    cable_server: float
    redis: float

    @property
    def total(self) -> float:
        return self.navigator + self.cable_server + self.redis


@dataclass(frozen=True)
class HealthCheck:
    path: str
    interval_seconds: float
    timeout_seconds: float
    deadline_seconds: float
    failure_limit: int


@dataclass(frozen=True)
class Stage:
    name: str
    environment: EnvironmentName
    regions: tuple[str, ...]
    bake: str


@dataclass(frozen=True)
class Rollout:
    health_check: HealthCheck
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class RegionSettings:
    """What one region of one environment runs, after overrides."""

    environment: Environment
    region: Region
    mode: Mode
    websocket_enabled: bool


@dataclass(frozen=True)
class Inventory:
    name: str
    app: App
    environments: dict[str, Environment]
    regions: dict[str, Region]
    tenants: tuple[Tenant, ...]
    websocket: WebSocket
    action_cable: ActionCableMode
    anycable: AnyCableMode
    integrated: IntegratedMode
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

    def tenants_in(self, region: str) -> list[Tenant]:
        return sorted(
            (tenant for tenant in self.tenants if tenant.region == region),
            key=lambda tenant: (tenant.year, tenant.studio, tenant.event or ""),
        )
