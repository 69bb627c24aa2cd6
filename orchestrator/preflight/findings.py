"""What the audit reports: findings with a stable code, a severity, where they are, and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from orchestrator.model import Mode


class Severity(Enum):
    BLOCKING = "blocking"  # the mode cannot serve the app as it is
    WARNING = "warning"  # it works, but the operator should know
    INFO = "info"  # what the audit saw, for the record

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.BLOCKING: 0, Severity.WARNING: 1, Severity.INFO: 2}


class Code(Enum):
    """Stable identifiers: scripts and the JSON output may rely on them."""

    CHANNEL_ACTION = "channel-action"
    CLIENT_PERFORM = "client-perform"
    STREAM_CALLBACK = "stream-callback"
    CHANNEL_RUNS_COMMANDS = "channel-runs-commands"
    TOKENS_FILE = "tokens-file"
    CLIENT_PROTOCOL = "client-protocol"
    CHANNEL_UNSUPPORTED = "channel-unsupported"
    CHANNEL_UNMAPPED = "channel-unmapped"
    HUB_STREAM_REFUSED = "hub-stream-refused"
    STREAM_PER_USER = "stream-per-user"
    CONNECTION_AUTH = "connection-auth"
    REDIS_IN_USE = "redis-in-use"
    CABLE_YML = "cable-yml"
    CABLE_YML_LOST = "cable-yml-lost"
    CABLE_YML_UNREADABLE = "cable-yml-unreadable"
    CLIENT_UNUSED = "client-unused"
    FILE_SKIPPED = "file-skipped"


@dataclass(frozen=True, slots=True)
class Where:
    file: str  # relative to the app
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Finding:
    code: Code
    severity: Severity
    where: Where
    message: str
    remedy: str
    modes: tuple[Mode, ...]  # the modes this finding is about, with this severity

    def sort_key(self) -> tuple[int, str, int, str]:
        return (self.severity.rank, self.where.file, self.where.line or 0, self.code.value)
