"""Settings of the unit's MQTT link: the `[broker]` table of `agent.toml`.

The link takes this model as it is (`UnitLink(settings, ...)`); the unit's id and the
agent's version, which are not settings of the link, are given beside it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.topics import DEFAULT_ROOT

__all__ = ["LinkSettings"]


class LinkSettings(BaseModel):
    """Where the broker is, the unit's TLS identity, and the link's limits and backoff.
    Relative paths are read from the folder of `agent.toml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Broker host name or address")
    port: int = Field(8883, ge=1, le=65535, description="Broker TLS port")
    topic_root: str = Field(DEFAULT_ROOT, description="Topic root shared by the fleet")
    ca_file: Path = Field(
        Path("ca.crt"), description="Fleet CA certificate: the broker's must chain to it"
    )
    cert_file: Path = Field(Path("unit.crt"), description="This unit's client certificate")
    key_file: Path = Field(Path("unit.key"), description="This unit's TLS private key")
    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive")
    connect_timeout_s: float = Field(15.0, gt=0, description="Limit for TCP+TLS+CONNACK")
    ack_timeout_s: float = Field(15.0, gt=0, description="Limit for each PUBACK / SUBACK")
    backoff_base_s: float = Field(1.0, gt=0, description="First reconnect delay (full jitter)")
    backoff_cap_s: float = Field(60.0, gt=0, description="Longest reconnect delay")
    stable_after_s: float = Field(
        30.0, ge=0, description="A connection held this long resets the backoff"
    )
    refusals_before_fatal: int = Field(
        3, ge=1, description="Consecutive refusals (certificate, not authorised) before giving up"
    )
    inflight: int = Field(16, ge=1, le=1000, description="QoS 1 messages awaiting PUBACK at once")
    close_flush_s: float = Field(5.0, ge=0, description="On close, time to flush the outbox")

    @model_validator(mode="after")
    def _backoff(self) -> LinkSettings:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must not be less than backoff_base_s")
        return self
