"""Who the client is behind a reverse proxy: `X-Forwarded-For` and `X-Forwarded-Proto`,
believed only from the proxies named in `http.trusted_proxies` (none by default).

The client address feeds the login limit per address and the audit log, so a header
anyone can write must not decide it. The app resolves it itself, whatever server runs
it; the controller's uvicorn is started with `proxy_headers=False` (uvicorn's own
handling trusts 127.0.0.1 by default, so any local process could name any address).

From a trusted peer, `X-Forwarded-For` is read right to left (each proxy appends the
address it saw): trusted proxies are skipped and the first other address is the client.
An entry that is not an IP address ends the walk at the last proxy, which is then taken
as the client: what lies beyond it cannot be believed. `X-Forwarded-Proto` (`http` or
`https`) is taken from a trusted peer too, so cookies are marked Secure behind a TLS proxy.

    app.add_middleware(ForwardedClient, trusted=settings.http.trusted_proxies)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ForwardedClient", "client_address"]

Network = IPv4Network | IPv6Network


def _address(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address | None, trusted: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client's address: `peer`, or from `forwarded_for` (the `X-Forwarded-For`
    header values, in order) when `peer` is a trusted proxy."""
    if not _trusted(_address(peer), trusted):
        return peer
    client = peer
    entries = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:
            break  # not an address: nothing beyond the last proxy can be believed
        client = str(address)
        if not _trusted(address, trusted):
            break
    return client


class ForwardedClient:
    """ASGI middleware: set `scope["client"]` (and `scope["scheme"]`) from the forwarded
    headers of a trusted proxy; leave both alone for any other peer."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if (
            scope["type"] in ("http", "websocket")
            and peer is not None
            and _trusted(_address(peer[0]), self.trusted)
        ):
            forwarded: list[str] = []
            proto = ""
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    forwarded.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip().lower()
            scope = dict(scope)
            client = client_address(peer[0], forwarded, self.trusted)
            if client != peer[0]:
                scope["client"] = (client, 0)
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")
        await self.app(scope, receive, send)
