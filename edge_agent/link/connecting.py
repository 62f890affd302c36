"""Opening one MQTT connection to the broker, and telling a refusal (`Verdict.REFUSED`: a
CONNACK code retrying cannot fix, or a TLS refusal of either certificate, see
`edge_agent.link.tls`) from a network fault, which the link retries after a backoff
(`edge_agent.backoff`)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from edge_agent.link.settings import LinkSettings
from edge_agent.link.tls import Verdict, diagnose, network_detail

__all__ = [
    "ConnectFailed",
    "SessionEnded",
    "check_still_refused",
    "describe",
    "enter_client",
    "reason_code",
]

#: CONNACK reason codes that retrying cannot fix (paho maps MQTT 3.1.1 return codes 1-5
#: onto the MQTT 5 codes 132-136; 136 "server unavailable" is worth retrying).
_FATAL_CONNACK = {
    132: "unsupported protocol version",
    133: "client identifier not accepted",
    134: "bad user name or password",
    135: "not authorised",
    138: "banned",
    140: "bad authentication method",
}


class ConnectFailed(Exception):
    """No usable connection: `verdict` says whether the broker refused this unit."""

    def __init__(self, verdict: Verdict, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict
        self.detail = detail


class SessionEnded(Exception):
    """A connection that was up has been lost."""

    def __init__(self, connected_at: float, detail: str) -> None:
        super().__init__(detail)
        self.connected_at = connected_at
        self.detail = detail


async def check_still_refused(s: LinkSettings, context: ssl.SSLContext) -> None:
    """After a refusal, a TLS-only dial tells in milliseconds whether the broker still
    refuses us; a full MQTT connect would wait for a CONNACK that never comes (TLS 1.3: the
    alert arrives after the handshake). Raises `ConnectFailed` if it does."""
    found = await diagnose(s.host, s.port, context, within=s.connect_timeout_s)
    if found.verdict is Verdict.REFUSED:
        raise ConnectFailed(found.verdict, found.detail)


async def enter_client(
    stack: contextlib.AsyncExitStack,
    client: aiomqtt.Client,
    s: LinkSettings,
    context: ssl.SSLContext,
) -> None:
    """Connect `client` within `stack`, or raise `ConnectFailed` saying why not."""
    try:
        async with asyncio.timeout(s.connect_timeout_s * 2):
            await stack.enter_async_context(client)
    except MqttConnectError as exc:
        code = reason_code(exc.rc)
        if code in _FATAL_CONNACK:
            raise ConnectFailed(Verdict.REFUSED, _FATAL_CONNACK[code]) from exc
        raise ConnectFailed(Verdict.NETWORK, f"connection refused: {exc}") from exc
    except (aiomqtt.MqttError, TimeoutError) as exc:
        # aiomqtt keeps paho's socket error only as the context. A plain socket
        # error (refused, unreachable, DNS) needs no probe; a TLS error or a
        # timeout (TLS 1.3 refusals look like a CONNACK timeout) does.
        cause = exc.__context__
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError | TimeoutError):
            raise ConnectFailed(Verdict.NETWORK, network_detail(cause, s.host, s.port)) from exc
        found = await diagnose(s.host, s.port, context, within=s.connect_timeout_s)
        raise ConnectFailed(found.verdict, found.detail) from exc


def reason_code(rc: object) -> int:
    """The number of a paho ReasonCode or of a plain MQTT 3.1.1 return code."""
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else -1


def describe(exc: BaseException) -> str:
    """One line for a lost connection, from the first leaf of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "no acknowledgement in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
