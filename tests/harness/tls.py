"""TLS client contexts for a fleet identity (unit, controller, simulator)."""

from __future__ import annotations

import ssl

from provisioning import ClientIdentity

__all__ = ["tls_context"]


def tls_context(
    identity: ClientIdentity,
    *,
    check_hostname: bool = True,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """Trust only the fleet CA; present the identity's certificate.

    `maximum_version=TLSv1_2` makes a refused client certificate fail the handshake itself
    (TLS 1.3 reports it only after the handshake, on the first read)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(identity.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if maximum_version is not None:
        context.maximum_version = maximum_version
    context.check_hostname = check_hostname
    context.load_cert_chain(str(identity.cert_file), str(identity.key_file))
    return context
