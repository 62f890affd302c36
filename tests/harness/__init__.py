"""Test harness shared by every integration test: real Mosquitto, throwaway fleets."""

from tests.harness.binaries import require_binary
from tests.harness.broker import BrokerError, MosquittoBroker, free_port
from tests.harness.fleet import (
    DEFAULT_UNITS,
    FLEET_PASSPHRASE,
    PROBES,
    connect_refusal,
    make_fleet,
    mqtt_client,
    receive_until,
)
from tests.harness.tls import tls_context

__all__ = [
    "DEFAULT_UNITS",
    "FLEET_PASSPHRASE",
    "PROBES",
    "BrokerError",
    "MosquittoBroker",
    "connect_refusal",
    "free_port",
    "make_fleet",
    "mqtt_client",
    "receive_until",
    "require_binary",
    "tls_context",
]
