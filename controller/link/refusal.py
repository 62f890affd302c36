"""Telling a refusal of the controller (`LinkRefused`: retrying cannot help until someone
changes the broker, its ACL or the certificates) from a fault worth retrying.

- a CONNACK reason code such as "not authorised" (`connack_refusal`);
- the TLS layer: the broker's certificate not trusted by us, or a TLS alert from the
  broker about our certificate, during the handshake (TLS 1.2) or on the first read
  (TLS 1.3 checks the client's certificate after the handshake) (`refusal`);
- a DISCONNECT saying another connection took our session (`SESSION_TAKEN_OVER`): two
  controllers run with one certificate;
- a subscription refused (a SUBACK failure code; see `controller.link.connection`).
"""

from __future__ import annotations

import ssl

__all__ = ["SESSION_TAKEN_OVER", "connack_refusal", "refusal"]

#: CONNACK reason codes that retrying cannot fix (MQTT 5 section 3.2.2.2; 136 "server
#: unavailable" and 137 "server busy" are worth retrying).
_FATAL_CONNACK = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not accepted",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x8A: "banned",
    0x8C: "bad authentication method",
}
#: DISCONNECT from the broker that means another connection holds our identity now
#: (MQTT 5 section 3.14.2.1): two controllers run with one certificate.
SESSION_TAKEN_OVER = 0x8E
#: TLS alerts that mean "your certificate is not acceptable" (RFC 8446 section 6.2).
_CERT_ALERTS = (
    "ALERT_BAD_CERTIFICATE",
    "ALERT_UNSUPPORTED_CERTIFICATE",
    "ALERT_CERTIFICATE_REVOKED",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_UNKNOWN_CA",
    "ALERT_ACCESS_DENIED",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_HANDSHAKE_FAILURE",
)


def refusal(error: BaseException | str) -> str | None:
    """Why the TLS layer refused us for good (as a sentence), or None if it did not."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the broker's certificate is not trusted ({error.verify_message})"
    text = error if isinstance(error, str) else str(getattr(error, "reason", None) or error)
    if isinstance(error, str | ssl.SSLError) and any(a in text.upper() for a in _CERT_ALERTS):
        return f"the broker refused this controller's certificate ({text})"
    return None


def connack_refusal(code: int) -> str | None:
    """Why a CONNACK reason code refuses us for good, or None if it is worth retrying."""
    why = _FATAL_CONNACK.get(code)
    return None if why is None else f"the broker says {why}"
