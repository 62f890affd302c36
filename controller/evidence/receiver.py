"""The controller's evidence endpoint: HTTPS (HTTP/1.1 over TLS 1.2+) that units upload
case footage to, in the protocol of `protocol.evidence_upload`, served by
`controller.evidence.uploads.UploadService`.

Both ends are authenticated with the fleet's certificates. The endpoint presents its own
server certificate (`cctv-provision evidence-endpoint`) and requires a client certificate
that chains to the fleet CA and is not on the fleet's CRL (checked at every handshake; the
CRL file is read again when it changes, so a unit revoked with `cctv-provision revoke` is
refused from its next connection). The certificate's CN is the unit id, the same identity
as its MQTT link: the service lets it write only to uploads asked of that unit.

A small server of its own (asyncio + h11) rather than the web API's: the API cannot see
the client certificate through ASGI, and chunks are streamed straight to the service,
which keeps what arrived of a chunk cut part way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11
from pydantic import ValidationError

from controller.evidence.upload_errors import BodyCut, UploadRefused
from controller.evidence.upload_settings import UploadEndpointFiles
from controller.evidence.uploads import UploadService
from protocol.evidence_upload import FILE_NAME, ContentRange, UploadOffer, UploadState

__all__ = ["UploadReceiver", "server_context"]

log = logging.getLogger(__name__)

_UPLOAD = re.compile(r"^/uploads/([A-Za-z0-9._:-]{1,128})$")
_FILE = re.compile(r"^/uploads/([A-Za-z0-9._:-]{1,128})/files/(" + FILE_NAME[1:-1] + r")$")
#: Largest offer body (a manifest and 100 000 files fit well within it).
MAX_OFFER_BYTES = 32 * 1024 * 1024
_READ = 256 * 1024
_BODY_READ = 64 * 1024
#: More than a TLS record and the plaintext buffered above the socket can hold back.
_RECORD_SLACK = 96 * 1024
_NETWORK_ERRORS = (OSError, TimeoutError, ssl.SSLError, h11.RemoteProtocolError)


def server_context(files: UploadEndpointFiles) -> ssl.SSLContext:
    """TLS 1.2+, the endpoint's certificate, a client certificate from the fleet CA
    required, and checked against the CRL when there is one."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    if files.crl_file is not None:
        context.load_verify_locations(cafile=str(files.crl_file))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def _common_name(peercert: Any) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class _Contexts:
    """The server context, made again whenever the CRL file changes."""

    def __init__(self, files: UploadEndpointFiles) -> None:
        self.files = files
        self._stamp: tuple[int, int] | None = None
        self._context = server_context(files)
        self._stamp = self._crl_stamp()

    def _crl_stamp(self) -> tuple[int, int] | None:
        crl: Path | None = self.files.crl_file
        if crl is None:
            return None
        try:
            stat = crl.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def current(self) -> ssl.SSLContext:
        stamp = self._crl_stamp()
        if stamp != self._stamp:
            try:
                self._context = server_context(self.files)
                self._stamp = stamp
                log.info("evidence endpoint: CRL read again")
            except (OSError, ssl.SSLError) as exc:  # half-written: keep the last good one
                log.error("evidence endpoint: CRL not usable yet: %s", exc)
        return self._context


class _Exchange:
    """One connection: h11 over the TLS stream."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle_s: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_s = idle_s
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        self._socket = writer.get_extra_info("socket")
        self._lowat = 1

    def _wake_after(self, size: int) -> None:
        """Ask the kernel to wake the loop only once `size` bytes are waiting: on a slow
        link each packet would otherwise cost a turn of the TLS layer in Python."""
        size = max(1, min(size, _BODY_READ))
        if size != self._lowat and self._socket is not None:
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
                self._lowat = size
            except OSError:
                self._socket = None

    async def next_event(self, want: int = 0) -> Any:
        """The next h11 event. `want`: body bytes still to come, read in one go (up to
        64 KiB) rather than as each packet lands."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            # Part of a TLS record may already be read: only what surely is still to come.
            self._wake_after(want - _RECORD_SLACK)
            async with asyncio.timeout(self.idle_s):
                if want > 0:
                    try:
                        data = await self.reader.readexactly(min(want, _BODY_READ))
                    except asyncio.IncompleteReadError as exc:
                        self.conn.receive_data(exc.partial)
                        data = b""  # the end of the stream
                else:
                    data = await self.reader.read(_READ)
            self.conn.receive_data(data)

    async def body(self, length: int | None = None) -> AsyncIterator[bytes]:
        """The request body as it arrives; BodyCut when it stops before its end.
        `length`: its Content-Length, when known."""
        if self.conn.they_are_waiting_for_100_continue:
            self.writer.write(
                self.conn.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        left = length or 0
        while True:
            try:
                event = await self.next_event(left)
            except _NETWORK_ERRORS as exc:
                raise BodyCut(str(exc) or type(exc).__name__) from exc
            if isinstance(event, h11.Data):
                left -= len(event.data)
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise BodyCut("the connection closed")

    async def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for data in self.body():
            size += len(data)
            if size > limit:
                raise UploadRefused(f"the body is larger than {limit} bytes")
            parts.append(data)
        return b"".join(parts)

    async def respond(self, status: int, doc: dict[str, Any], *, close: bool = False) -> None:
        body = json.dumps(doc, separators=(",", ":")).encode()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("cache-control", "no-store"),
        ]
        if close:
            headers.append(("connection", "close"))
        self.writer.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
        self.writer.write(self.conn.send(h11.Data(data=body)))
        self.writer.write(self.conn.send(h11.EndOfMessage()))
        async with asyncio.timeout(self.idle_s):
            await self.writer.drain()


def _state_doc(state: UploadState) -> dict[str, Any]:
    return state.model_dump(mode="json")


class UploadReceiver:
    """`await start()` then `await close()`; or `await run()` until cancelled."""

    def __init__(
        self,
        service: UploadService,
        files: UploadEndpointFiles,
        *,
        host: str,
        port: int,
        idle_timeout_s: float = 60.0,
    ) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self._contexts = _Contexts(files)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        log.info("evidence endpoint listening on https://%s:%d", self.host, self.bound_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    await writer.start_tls(self._contexts.current())
            except (*_NETWORK_ERRORS, ConnectionError) as exc:
                log.info("evidence endpoint: TLS refused peer=%s: %s", peer, exc)
                return
            unit_id = _common_name(writer.get_extra_info("peercert"))
            if unit_id is None:
                return
            await self._exchanges(_Exchange(reader, writer, self.idle_timeout_s), unit_id)
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(*_NETWORK_ERRORS, asyncio.CancelledError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _exchanges(self, ex: _Exchange, unit_id: str) -> None:
        while True:
            try:
                event = await ex.next_event()
            except h11.RemoteProtocolError as exc:
                with contextlib.suppress(*_NETWORK_ERRORS, h11.LocalProtocolError):
                    await ex.respond(exc.error_status_hint, {"error": str(exc)}, close=True)
                return
            except _NETWORK_ERRORS:
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or the peer is gone
            try:
                done = await self._handle(ex, unit_id, event)
            except BodyCut as exc:
                log.info("unit=%s chunk cut part way: %s", unit_id, exc)
                return
            except _NETWORK_ERRORS:
                return
            if not done or ex.conn.our_state is h11.MUST_CLOSE:
                return
            try:
                ex.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _handle(self, ex: _Exchange, unit_id: str, request: h11.Request) -> bool:
        """Answer one request; False when the connection must close after it."""
        method = request.method.decode()
        target = request.target.decode("ascii", "replace").split("?", 1)[0]
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        try:
            state = await self._route(ex, unit_id, method, target, headers)
        except UploadRefused as exc:
            doc: dict[str, Any] = {"error": exc.reason}
            if exc.state is not None:
                doc["state"] = _state_doc(exc.state)
            unread = ex.conn.their_state is h11.SEND_BODY
            await ex.respond(exc.status, doc, close=unread)
            return not unread
        except BodyCut:
            raise
        except _NETWORK_ERRORS:
            raise
        except Exception:
            log.exception("unit=%s %s %s failed", unit_id, method, target)
            await ex.respond(503, {"error": "the controller cannot take this now"}, close=True)
            return False
        await ex.respond(200, _state_doc(state))
        return True

    async def _route(
        self, ex: _Exchange, unit_id: str, method: str, target: str, headers: dict[str, str]
    ) -> UploadState:
        if (m := _FILE.match(target)) is not None:
            if method != "PUT":
                raise UploadRefused(f"{method} is not allowed here (PUT a chunk)")
            upload_id, name = m.groups()
            try:
                span = ContentRange.parse(headers.get("content-range", ""))
            except (ValueError, ValidationError) as exc:
                raise UploadRefused(f"Content-Range: {exc}") from exc
            if headers.get("content-length") != str(span.length):
                raise UploadRefused("Content-Length must be the length of the Content-Range")
            return await self.service.receive(
                unit_id, upload_id, name, span, ex.body(span.length), ex.writer.transport.abort
            )
        if (m := _UPLOAD.match(target)) is not None:
            upload_id = m.group(1)
            if method == "GET":
                await ex.read_all(1024)
                return await self.service.state(unit_id, upload_id)
            if method == "POST":
                data = await ex.read_all(MAX_OFFER_BYTES)
                try:
                    offer = UploadOffer.model_validate_json(data)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"]) or "offer"
                    raise UploadRefused(f"not an upload offer: {where}: {first['msg']}") from exc
                return await self.service.offer(unit_id, upload_id, offer)
            raise UploadRefused(f"{method} is not allowed here (GET or POST)")
        raise _NotFound(f"nothing at {target}")


class _NotFound(UploadRefused):
    status = 404
