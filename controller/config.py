"""Controller settings: a TOML file plus environment overrides (`CCTV_CONTROLLER_*`,
nested keys joined by `__`, e.g. `CCTV_CONTROLLER_BROKER__PORT=8883`).

    database_url = "sqlite+aiosqlite:///controller.db"
    fleet_dir = "/etc/cctv/fleet"        # fills in the broker certificates and signing key
    offline_timeout_s = 90

    [broker]
    host = "broker.example.org"
    port = 8883

    timezone = "Europe/London"           # the zone pages, notifications and reports show

    [contracts."Acme Maintenance Ltd"]
    hours = "Mon-Fri 08:00-18:00"
    emails = ["dispatch@acme.example"]
    webhook_urls = ["https://acme.example/hooks/cctv"]
    required_checks = ["clock"]          # not assessed is then a warning, not neutral

    [sites."Market Street car park"]
    required_checks = ["temperature"]

`ControllerSettings.load(path)` reads and validates; a bad value fails with a
`ConfigError` naming the key and the reason.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from controller.callouts.sla import ContractClock
from controller.deployments.models import DeploymentPolicy
from controller.errors import ConfigError
from controller.evidence.settings import EvidenceSettings
from protocol.checks import CheckName
from protocol.faults import Priority
from protocol.topics import DEFAULT_ROOT, Topics

__all__ = [
    "BrokerSettings",
    "ContractSettings",
    "ControllerSettings",
    "HttpSettings",
    "IngestSettings",
    "SiteSettings",
    "SlaTarget",
    "SmtpSettings",
    "WebhookSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Section):
    host: str = Field("127.0.0.1", description="Broker address")
    port: int = Field(8883, ge=1, le=65535, description="Broker TLS port")
    topic_root: str = Field(DEFAULT_ROOT, description="Topic root of the fleet")
    ca_file: Path | None = Field(None, description="Fleet CA certificate (PEM)")
    cert_file: Path | None = Field(None, description="Controller client certificate (PEM)")
    key_file: Path | None = Field(None, description="Controller client key (PEM)")
    identity: str = Field(
        "controller",
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Centre identity this instance connects as (with fleet_dir, its "
        "certificate is found by name: 'controller', or one issued with "
        "`cctv-provision add-client controller-2`); each running instance needs its own",
    )
    client_id: str | None = Field(
        None,
        description="MQTT client id (default: the CN of cert_file, which the broker forces "
        "anyway); the broker keeps the session of this id while the controller is away",
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=2**32 - 1,
        description="How long the broker keeps the controller's session (and queues what "
        "units send) after it disconnects",
    )
    shared_group: str | None = Field(
        None,
        description="Subscribe as an MQTT v5 shared subscription in this group (several "
        "controllers, each with its own certificate, share the load)",
    )
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive")
    connect_timeout_s: float = Field(10.0, gt=0, description="Limit for connect/subscribe")

    @field_validator("topic_root")
    @classmethod
    def _root(cls, value: str) -> str:
        Topics(value)
        return value


def _known_checks(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(CheckName))
    if unknown:
        raise ValueError(
            f"unknown self-test check {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(CheckName))})"
        )
    return sorted(set(names))


class SiteSettings(_Section):
    required_checks: list[str] = Field(
        default_factory=list,
        description="Self-test checks the site requires: one not assessed there is a warning "
        "(by default a check that could not judge counts for nothing)",
    )

    @field_validator("required_checks")
    @classmethod
    def _checks(cls, value: list[str]) -> list[str]:
        return _known_checks(value)


class SlaTarget(_Section):
    respond_h: float = Field(gt=0, description="Contract hours to attend")
    repair_h: float = Field(gt=0, description="Contract hours to repair")


class ContractSettings(_Section):
    hours: str = Field("24x7", description="When the SLA clock runs, e.g. 'Mon-Fri 08:00-18:00'")
    timezone: str = Field("Europe/London", description="Time zone of the hours")
    emails: list[str] = Field(default_factory=list, description="Where callout mail goes")
    webhook_urls: list[str] = Field(default_factory=list, description="Callout webhooks")
    p1: SlaTarget = Field(default_factory=lambda: SlaTarget(respond_h=4, repair_h=8))
    p2: SlaTarget = Field(default_factory=lambda: SlaTarget(respond_h=8, repair_h=16))
    routine_visit_days: int = Field(30, ge=1, description="P3 faults wait for the routine visit")
    routine_visit_start: date | None = Field(
        None, description="A routine visit date; later visits follow every routine_visit_days"
    )
    required_checks: list[str] = Field(
        default_factory=list,
        description="Self-test checks the contract requires on every unit: one not assessed "
        "is a warning (by default a check that could not judge counts for nothing)",
    )

    @field_validator("required_checks")
    @classmethod
    def _checks(cls, value: list[str]) -> list[str]:
        return _known_checks(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        ContractClock(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        ContractClock("24x7", value)
        return value

    def clock(self) -> ContractClock:
        return ContractClock(self.hours, self.timezone)

    def deadlines(self, priority: Priority, at: datetime) -> tuple[datetime, datetime]:
        """(respond by, repair by) of a fault of `priority` raised `at`. P1/P2 run on the
        contract clock; P3 waits for the next routine visit."""
        target = self.target(priority)
        if target is not None:
            clock = self.clock()
            return clock.add(at, target.respond_h), clock.add(at, target.repair_h)
        interval = timedelta(days=self.routine_visit_days)
        if self.routine_visit_start is None:
            return at + interval, at + interval
        first = datetime.combine(self.routine_visit_start, time(0), UTC)
        steps = max(0, -(-(at - first) // interval))
        visit = first + steps * interval
        return visit, visit

    def target(self, priority: Priority) -> SlaTarget | None:
        """The respond/repair hours of a priority; None for P3 (the routine visit)."""
        return {Priority.P1: self.p1, Priority.P2: self.p2}.get(priority)


class SmtpSettings(_Section):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    sender: str = "cctv-controller@localhost"
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_s: float = Field(10.0, gt=0)


class WebhookSettings(_Section):
    timeout_s: float = Field(5.0, gt=0, description="Limit per HTTP attempt")
    attempts: int = Field(4, ge=1, le=20, description="Tries before a notification fails")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles, with jitter")
    secret: SecretStr | None = Field(
        None, description="When set, each POST carries X-CCTV-Signature: sha256=<HMAC>"
    )


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the web pages and API listen on")
    port: int = Field(8080, ge=1, le=65535, description="Port of the web pages and API")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or networks, e.g. '10.0.0.5') whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; from any other peer they are "
        "ignored. None by default",
    )


class IngestSettings(_Section):
    batch_max: int = Field(1000, ge=1, description="Messages per database commit at most")
    batch_interval_ms: int = Field(50, ge=1, le=5000, description="Longest wait before a commit")
    queue_max: int = Field(
        10_000,
        ge=100,
        le=65535,
        description="Received messages not yet committed at most: the MQTT Receive Maximum "
        "the controller announces, so the broker holds back the rest until commits free room",
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> IngestSettings:
        if self.batch_max > self.queue_max:
            raise ValueError(
                f"batch_max ({self.batch_max}) cannot exceed queue_max ({self.queue_max}): "
                "a batch only holds messages received and not yet committed"
            )
        return self


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CCTV_CONTROLLER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    database_url: str = Field("sqlite+aiosqlite:///controller.db", description="SQLAlchemy URL")
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    fleet_dir: Path | None = Field(None, description="Provisioning fleet directory")
    signing_key_file: Path | None = Field(None, description="Ed25519 command-signing key")
    offline_timeout_s: float = Field(90, gt=0, description="Offline after this long unheard")
    selftest_overdue_h: float = Field(13, gt=0, description="Function check age that is overdue")
    sweep_interval_s: float = Field(5, gt=0, description="Offline/SLA/overdue job period")
    contracts: dict[str, ContractSettings] = Field(default_factory=dict)
    default_contract: ContractSettings = Field(default_factory=ContractSettings)
    sites: dict[str, SiteSettings] = Field(
        default_factory=dict, description="Per site (a unit's site in the inventory)"
    )
    timezone: str = Field(
        "Europe/London",
        description="The control room's time zone: pages, notifications and reports show "
        "times in it, with the zone named",
    )
    smtp: SmtpSettings | None = None
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    deployments: DeploymentPolicy = Field(
        default_factory=DeploymentPolicy, description="PIA review periods and reminders"
    )
    evidence: EvidenceSettings = Field(
        default_factory=EvidenceSettings, description="Evidence store, case limits, SAR reminders"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> ControllerSettings:
        """Read `path` (TOML) under environment overrides; raise ConfigError when invalid."""
        if path is not None and not Path(path).is_file():
            raise ConfigError(str(path), "no such settings file")
        try:
            config = SettingsConfigDict(**{**cls.model_config, "toml_file": path})
            subclass = type("ControllerSettingsFile", (cls,), {"model_config": config})
            settings: ControllerSettings = subclass(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "settings"
            raise ConfigError(key, first["msg"]) from exc
        except ValueError as exc:  # TOML syntax
            raise ConfigError(str(path), str(exc)) from exc
        return settings.resolved()

    def resolved(self) -> ControllerSettings:
        """Fill the broker certificates and signing key from `fleet_dir` where not given."""
        if self.fleet_dir is None:
            return self
        root = Path(self.fleet_dir)
        if self.broker.identity == "controller":
            cert, key = (
                root / "controller" / "controller.crt",
                root / "controller" / "controller.key",
            )
        else:
            client = root / "clients" / self.broker.identity
            cert, key = client / "client.crt", client / "client.key"
        broker = self.broker.model_copy(
            update={
                "ca_file": self.broker.ca_file or root / "ca" / "ca.crt",
                "cert_file": self.broker.cert_file or cert,
                "key_file": self.broker.key_file or key,
            }
        )
        return self.model_copy(
            update={
                "broker": broker,
                "signing_key_file": self.signing_key_file or root / "controller" / "signing.key",
            }
        )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (e.g. 'Europe/London')") from exc
        return value

    def contract(self, contractor: str | None) -> ContractSettings:
        if contractor is not None and contractor in self.contracts:
            return self.contracts[contractor]
        return self.default_contract

    def required_checks(self, contractor: str | None, site: str | None) -> frozenset[str]:
        """The self-test checks a unit must have assessed: its contract's and its site's."""
        required = set(self.contract(contractor).required_checks)
        if site is not None and site in self.sites:
            required.update(self.sites[site].required_checks)
        return frozenset(required)

    @property
    def zone(self) -> ZoneInfo:
        """The control room's time zone (`timezone`)."""
        return ZoneInfo(self.timezone)

    @property
    def topics(self) -> Topics:
        return Topics(self.broker.topic_root)
