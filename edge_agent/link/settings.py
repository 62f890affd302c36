"""Settings of the unit's MQTT link (the service maps `agent.toml` onto them)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol.topics import DEFAULT_ROOT, validate_unit_id

__all__ = ["LinkSettings"]


class LinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: str = Field(description="This unit's id: its certificate CN and MQTT client id")
    host: str = Field(description="Broker host name or address")
    port: int = Field(8883, ge=1, le=65535, description="Broker TLS port")
    topic_root: str = Field(DEFAULT_ROOT, description="Topic root shared by the fleet")
    ca_file: Path = Field(description="Fleet CA certificate: the broker's must chain to it")
    cert_file: Path = Field(description="This unit's client certificate")
    key_file: Path = Field(description="This unit's TLS private key")
    agent_version: str = Field("", max_length=100, description="Reported in the unit state")
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

    @field_validator("unit_id")
    @classmethod
    def _unit(cls, value: str) -> str:
        return validate_unit_id(value)

    @model_validator(mode="after")
    def _backoff(self) -> LinkSettings:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must not be less than backoff_base_s")
        return self
