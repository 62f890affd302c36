"""The controller's link to the broker: `ControllerLink` (`client`) keeps one MQTT v5
connection (`connection`) up, hands every received message to ingest as a `Delivery`
and acknowledges it once stored; `LinkError` when it is down or a request fails,
`LinkRefused` when the broker refuses this controller (`refusal` tells which)."""

from controller.errors import LinkError, LinkRefused
from controller.link.client import (
    ControllerLink,
    Delivery,
    certificate_cn,
    load_signer,
    tls_context,
)

__all__ = [
    "ControllerLink",
    "Delivery",
    "LinkError",
    "LinkRefused",
    "certificate_cn",
    "load_signer",
    "tls_context",
]
