"""The unit's TLS identity towards the broker, and telling a refused identity apart from a
network fault when a connection fails.

Why a probe: paho-mqtt (under aiomqtt) reports every TLS failure as a bare string, and a
client certificate the broker refuses does not even fail the connect. With TLS 1.3 the
client finishes its handshake before the server has checked the client's certificate; the
server's alert (`unknown ca`, `certificate revoked`, `bad certificate`) arrives on the
first read, paho logs it and aiomqtt only sees the CONNACK never come (a timeout). So
after any failed connect the link dials once more with plain TLS and looks:

- our side refuses the broker's certificate (`SSLCertVerificationError`: wrong fleet CA,
  wrong host name, expired)                                      -> REFUSED;
- the broker sends a TLS alert about OUR certificate, during the handshake (TLS 1.2) or
  on the first read (TLS 1.3)                                    -> REFUSED;
- connection refused / unreachable / DNS / timeout               -> NETWORK (retry);
- the broker accepts the handshake and waits for MQTT            -> NETWORK (retry: the
  failure was elsewhere, e.g. the broker was still starting);
- the broker closes the connection without an alert right after the handshake: ambiguous
  (a broker restarting does this too)                            -> NETWORK (retry).

A REFUSED verdict is final only after several consecutive refusals (see `UnitLink`): a
unit whose clock is wrong at boot, or a broker whose CRL is being replaced, must not give
up at the first try.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = ["Diagnosis", "Verdict", "client_context", "diagnose", "network_detail"]

#: TLS alerts that mean "your certificate is not acceptable" (RFC 8446 s. 6.2).
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


class Verdict(StrEnum):
    REFUSED = "refused"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    verdict: Verdict
    detail: str


def client_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Trust only the fleet CA, present the unit's certificate, TLS 1.2 or later.
    Raises OSError / ssl.SSLError when a file is missing or does not match."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def _alert(exc: ssl.SSLError) -> str | None:
    reason = getattr(exc, "reason", None) or ""
    return reason if any(reason.endswith(a) for a in _CERT_ALERTS) else None


async def diagnose(
    host: str,
    port: int,
    context: ssl.SSLContext,
    *,
    server_hostname: str | None = None,
    within: float = 10.0,
    settle: float = 1.0,
) -> Diagnosis:
    """Dial the broker with TLS only and say whether the identity or the network failed."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=server_hostname or host
            )
    except ssl.SSLCertVerificationError as exc:
        return Diagnosis(
            Verdict.REFUSED,
            f"the broker's certificate is not trusted by this unit: {exc.verify_message}",
        )
    except ssl.SSLError as exc:
        if (alert := _alert(exc)) is not None:
            return Diagnosis(
                Verdict.REFUSED, f"the broker refused this unit's certificate ({alert})"
            )
        return Diagnosis(Verdict.NETWORK, f"TLS handshake failed: {exc}")
    except (OSError, TimeoutError) as exc:
        return Diagnosis(Verdict.NETWORK, network_detail(exc, host, port))
    try:
        # TLS 1.3: the broker checks our certificate after our side finished; its verdict
        # is the first thing we can read. Silence means it accepted us and waits for MQTT.
        async with asyncio.timeout(settle):
            data = await reader.read(1)
        if not data:
            return Diagnosis(Verdict.NETWORK, "the broker closed the connection after TLS")
        return Diagnosis(Verdict.NETWORK, "the broker accepted TLS; MQTT connect failed")
    except TimeoutError:
        return Diagnosis(Verdict.NETWORK, "the broker accepted TLS; MQTT connect failed")
    except ssl.SSLError as exc:
        if (alert := _alert(exc)) is not None:
            return Diagnosis(
                Verdict.REFUSED, f"the broker refused this unit's certificate ({alert})"
            )
        return Diagnosis(Verdict.NETWORK, f"TLS error after the handshake: {exc}")
    except OSError as exc:
        return Diagnosis(Verdict.NETWORK, f"connection lost after TLS: {exc}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


def network_detail(exc: BaseException, host: str, port: int) -> str:
    """One line for a network failure to reach the broker."""
    if isinstance(exc, TimeoutError):
        return f"no answer from {host}:{port}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{host}:{port} refused the connection (broker down?)"
    return f"cannot reach {host}:{port}: {exc}"
