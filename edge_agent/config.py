"""The agent's configuration: `agent.toml` from the enrollment bundle, with environment
overrides (`CCTV_AGENT_<SECTION>__<KEY>`, e.g. `CCTV_AGENT_CAMERA__URL`).

One schema for the whole unit. The `[broker]` table is the link's own settings
(`edge_agent.link.LinkSettings`) and the `[power]` table the power monitor's
(`edge_agent.power.PowerConfig`): the agent hands those sections to the link and the
monitor as they are, so every setting of either can be set here.

A bad config fails at start with one message naming the file, the key and the reason.
Relative paths are relative to the folder of the TOML file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge_agent.errors import AgentError
from edge_agent.link.settings import LinkSettings
from edge_agent.power.config import PowerConfig
from edge_agent.selftest.sntp import parse_server
from protocol.evidence_upload import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES
from protocol.topics import validate_unit_id

__all__ = ["AgentSettings", "ConfigError", "RuntimeSettings", "load_config"]


class ConfigError(AgentError):
    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeysConfig(Section):
    signing_key_file: Path = Field(
        Path("unit-signing.key"), description="Unit Ed25519 key: signs the index checkpoints"
    )
    controller_public_key_file: Path = Field(
        Path("controller-signing.pub"), description="Verifies commands and authorizations"
    )
    evidence_public_key_file: Path = Field(
        Path("evidence-public.json"), description="Segment data keys are wrapped to it"
    )


class CameraConfig(Section):
    url: str = Field(
        "synthetic:", description="rtsp://, http(s)://, /dev/videoN, a file, synthetic:"
    )
    expected_fps: float | None = Field(None, gt=0, description="Frame rate the camera should give")
    name: str = Field("", description="A label for engineers")


class StorageConfig(Section):
    data_dir: Path = Field(Path("data"), description="Segments, index, outbox, state")
    segment_seconds: int = Field(60, ge=5, le=3600, description="Segment length")
    retention_days: int = Field(31, ge=1, le=3650, description="Default retention")
    min_free_mb: int = Field(512, ge=1, description="Free-space floor: oldest unheld goes first")
    retention_interval_s: int = Field(300, ge=5, description="How often retention runs")


class SelfTestConfig(Section):
    schedule: list[str] = Field(["07:00", "19:00"], description="Local times (shift change)")
    timezone: str = Field("Europe/London", description="IANA zone for the schedule")
    at_boot: bool = Field(True, description="Run a self-test when the agent starts")
    ntp_server: str | None = Field(
        None, description="NTP server for the clock check: host or host:port"
    )
    thermal_root: Path = Field(
        Path("/sys/class/thermal"), description="Thermal zones (checked, and in the heartbeat)"
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="Check overrides")

    @field_validator("ntp_server")
    @classmethod
    def _ntp(cls, value: str | None) -> str | None:
        if value is not None:
            parse_server(value)  # a ValueError names what is wrong
        return value

    @field_validator("schedule")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        for item in value:
            hh, _, mm = item.partition(":")
            if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
                raise ValueError(f"{item!r} is not a time of day HH:MM")
        return value


class LinkConfig(Section):
    """The `[link]` table: what the unit reports how often, and how much it keeps unsent
    (the connection itself is the `[broker]` table)."""

    heartbeat_interval_s: float = Field(30.0, gt=0, description="Heartbeat period")
    power_interval_s: float = Field(300.0, gt=0, description="Periodic power report")
    outbox_max: int = Field(50_000, ge=100, description="Outbox bound (heartbeats go first)")


class PositionConfig(Section):
    fixed: tuple[float, float] | None = Field(None, description="(lat, lon) of a fixed unit")
    gpsd_host: str | None = Field(None, description="gpsd host, when the unit has a GNSS")
    gpsd_port: int = Field(2947, ge=1, le=65535)


class EvidenceConfig(Section):
    upload_url: str | None = Field(
        None,
        description="The controller's evidence upload endpoint (https://host:port); the "
        "only place footage is ever uploaded to. Unset: upload commands fail",
    )
    ca_file: Path = Field(Path("ca.crt"), description="CA the endpoint's certificate chains to")
    bandwidth_bytes_s: int = Field(
        250_000,
        ge=0,
        description="Upload cap in bytes per second (250000 = 2 Mbit/s, for 4G); 0 = none",
    )
    chunk_bytes: int = Field(
        DEFAULT_CHUNK_BYTES, ge=64 * 1024, le=MAX_CHUNK_BYTES, description="Bytes per request"
    )
    retry_base_s: float = Field(2.0, gt=0, description="First wait after a failed attempt")
    retry_cap_s: float = Field(300.0, gt=0, description="Longest wait between attempts")
    timeout_s: float = Field(
        60.0, gt=0, description="Limit on each network wait (connect, send, answer)"
    )

    @field_validator("upload_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"{value!r} has a bad port") from exc
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"must be an https:// URL with a host, not {value!r}")
        if parts.path not in ("", "/"):
            raise ValueError(f"must be the endpoint's address without a path, not {value!r}")
        return value.rstrip("/")


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CCTV_AGENT_", env_nested_delimiter="__", extra="forbid"
    )

    unit_id: str = Field(description="This unit's id (= certificate CN)")
    broker: LinkSettings = Field(default_factory=LinkSettings)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    selftest: SelfTestConfig = Field(default_factory=SelfTestConfig)
    power: PowerConfig = Field(default_factory=PowerConfig)
    link: LinkConfig = Field(default_factory=LinkConfig)
    position: PositionConfig = Field(default_factory=PositionConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Prometheus port")
    base_dir: Path = Field(
        Path("."), description="Folder relative paths are read from", exclude=True
    )

    @field_validator("unit_id")
    @classmethod
    def _unit(cls, value: str) -> str:
        validate_unit_id(value)
        return value

    @model_validator(mode="after")
    def _absolute_paths(self) -> AgentSettings:
        for name in ("broker", "keys", "storage", "selftest", "power", "evidence"):
            section: BaseModel = getattr(self, name)
            relative = {
                key: (self.base_dir / value).resolve()
                for key, value in section
                if isinstance(value, Path) and not value.is_absolute()
            }
            if relative:
                setattr(self, name, section.model_copy(update=relative))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: the environment, then keyword arguments, then the file being read.
        path = _reading.get()
        if path is None:
            return (env_settings, init_settings)
        return (env_settings, init_settings, TomlConfigSettingsSource(settings_cls, path))


@dataclass
class RuntimeSettings:
    """The settings a signed `set_config` command may change while the agent runs (with
    the self-test thresholds, which the self-test runner holds); read afresh at each use."""

    selftest_schedule: list[str]
    heartbeat_interval_s: float
    power_interval_s: float

    @classmethod
    def from_settings(cls, cfg: AgentSettings) -> RuntimeSettings:
        return cls(
            selftest_schedule=list(cfg.selftest.schedule),
            heartbeat_interval_s=cfg.link.heartbeat_interval_s,
            power_interval_s=cfg.link.power_interval_s,
        )


def _describe(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return key, first["msg"]


def load_config(path: Path, **overrides: Any) -> AgentSettings:
    """Read `agent.toml` (`overrides` win over it, the environment over both); raise
    ConfigError with one readable line on any problem."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"config file {path} cannot be read: Is a directory")
    try:
        with _reading_file(path):
            return AgentSettings(**overrides, base_dir=path.resolve().parent)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc
    except ValidationError as exc:
        key, msg = _describe(exc)
        raise ConfigError(f"{path}: {key}: {msg}", key=key) from exc


#: The file `load_config` is reading, for `AgentSettings.settings_customise_sources`.
_reading: ContextVar[Path | None] = ContextVar("agent_config_file", default=None)


@contextmanager
def _reading_file(path: Path) -> Iterator[None]:
    token = _reading.set(path)
    try:
        yield
    finally:
        _reading.reset(token)
