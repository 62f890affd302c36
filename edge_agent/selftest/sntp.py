"""A minimal SNTP client (RFC 4330): one query, the clock offset, nothing else.

The clock check needs only "how far is our clock from the server's", so a full NTP
implementation would be dead weight on the unit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from dataclasses import dataclass

from edge_agent.errors import AgentError

__all__ = [
    "NTP_EPOCH_OFFSET",
    "NTP_PORT",
    "NtpError",
    "SntpResult",
    "from_ntp",
    "parse_server",
    "sntp_query",
    "to_ntp",
]

NTP_PORT = 123
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2_208_988_800
_PACKET = struct.Struct("!BBbb11I")  # 48 bytes: LI/VN/mode, stratum, poll, precision, 11 words


class NtpError(AgentError):
    """The NTP server could not be asked or gave an unusable answer."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"NTP {server}: {reason}")
        self.server = server
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SntpResult:
    offset_s: float
    """How far the server's clock is ahead of ours (negative: we are ahead)."""
    delay_s: float
    """Round trip, less the server's processing time."""
    stratum: int


def parse_server(text: str) -> tuple[str, int]:
    """ "host", "host:port", "[v6]:port" or a bare IPv6 address to (host, port)."""
    text = text.strip()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host, host:port or [address]:port")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"{text!r} names no host")
    if not port:
        return host, NTP_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
    return host, int(port)


def to_ntp(unix: float) -> tuple[int, int]:
    """Unix time to an NTP timestamp (seconds, fraction)."""
    ntp = unix + NTP_EPOCH_OFFSET
    seconds = int(ntp)
    return seconds & 0xFFFFFFFF, int((ntp - seconds) * 2**32) & 0xFFFFFFFF


def from_ntp(seconds: int, fraction: int) -> float:
    """An NTP timestamp to Unix time."""
    return seconds - NTP_EPOCH_OFFSET + fraction / 2**32


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[tuple[bytes, float]] = (
            asyncio.get_running_loop().create_future()
        )

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.answer.done():
            self.answer.set_result((data, time.time()))

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def sntp_query(host: str, port: int = 123, *, timeout_s: float = 3.0) -> SntpResult:
    """Ask an NTP server once (client mode, version 4) and compute the clock offset."""
    server = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    # A random transmit timestamp doubles as a nonce: the reply must echo it (RFC 4330 s.5).
    nonce = (int.from_bytes(os.urandom(4), "big"), int.from_bytes(os.urandom(4), "big"))
    request = _PACKET.pack(0x23, 0, 0, 0, *([0] * 9), *nonce)  # LI 0, VN 4, mode 3
    try:
        async with asyncio.timeout(timeout_s):
            transport, client = await loop.create_datagram_endpoint(
                _Client, remote_addr=(host, port), family=socket.AF_UNSPEC
            )
            try:
                t1 = time.time()
                transport.sendto(request)
                data, t4 = await client.answer
            finally:
                transport.close()
    except TimeoutError as exc:
        raise NtpError(server, f"no answer within {timeout_s:g} s") from exc
    except OSError as exc:
        raise NtpError(server, exc.strerror or str(exc)) from exc
    if len(data) < _PACKET.size:
        raise NtpError(server, f"short reply ({len(data)} bytes)")
    fields = _PACKET.unpack_from(data)
    mode, stratum, words = fields[0] & 0x7, fields[1], fields[4:]
    if mode != 4:
        raise NtpError(server, f"reply in mode {mode}, not server mode")
    if stratum == 0 or (fields[0] >> 6) == 3:
        raise NtpError(server, "server is not synchronised (kiss-o'-death or alarm)")
    if (words[5], words[6]) != nonce:
        raise NtpError(server, "reply does not answer our request")
    t2, t3 = from_ntp(words[7], words[8]), from_ntp(words[9], words[10])
    offset = ((t2 - t1) + (t3 - t4)) / 2
    delay = (t4 - t1) - (t3 - t2)
    return SntpResult(offset_s=offset, delay_s=max(0.0, delay), stratum=stratum)
