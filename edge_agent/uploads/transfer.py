"""The unit's HTTPS client for the controller's evidence endpoint (`protocol.evidence_upload`).

TLS 1.2+ to the endpoint in the unit's own config, trusting only the fleet CA and
presenting the unit's certificate (the identity of its MQTT link). Each call returns the
controller's `UploadState` or raises `EndpointError`: `retry` says whether trying again
later may help (network down, controller restarting or busy) or not (the controller
refuses the upload: not this unit's, never asked, over).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self

import httpx
from pydantic import ValidationError

from edge_agent.errors import AgentError
from edge_agent.uploads.throttle import TokenBucket
from protocol.evidence_upload import (
    ContentRange,
    UploadState,
    file_path,
    upload_path,
)

__all__ = ["EndpointClient", "EndpointError"]

#: Size of each write to the connection (the bucket is asked for each one).
PIECE_BYTES = 64 * 1024


class EndpointError(AgentError):
    def __init__(
        self,
        message: str,
        *,
        retry: bool,
        status: int | None = None,
        state: UploadState | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.status = status
        self.state = state


class EndpointClient:
    """`async with EndpointClient(url, context, ...) as client:` one connection, kept."""

    def __init__(
        self,
        base_url: str,
        context: ssl.SSLContext,
        *,
        timeout_s: float,
        bucket: TokenBucket,
        on_sent: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            verify=context,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            trust_env=False,
        )
        self._bucket = bucket
        self._on_sent = on_sent

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def state(self, upload_id: str) -> UploadState:
        return await self._call("GET", upload_path(upload_id))

    async def offer(self, upload_id: str, body: bytes) -> UploadState:
        return await self._call(
            "POST", upload_path(upload_id), content=body,
            headers={"content-type": "application/json"},
        )  # fmt: skip

    async def put(
        self, upload_id: str, name: str, offset: int, size: int, data: bytes
    ) -> UploadState:
        """Send `data` as the bytes of file `name` from `offset`. A 409 (the controller
        holds another offset) comes back as its state, not as an error."""
        span = ContentRange(first=offset, last=offset + len(data) - 1, size=size)

        async def pieces() -> AsyncIterator[bytes]:
            view = memoryview(data)
            for start in range(0, len(view), PIECE_BYTES):
                piece = view[start : start + PIECE_BYTES]
                await self._bucket.take(len(piece))
                self._on_sent(len(piece))
                yield bytes(piece)

        try:
            return await self._call(
                "PUT",
                file_path(upload_id, name),
                content=pieces(),
                headers={
                    "content-range": span.header(),
                    "content-length": str(len(data)),
                    "content-type": "application/octet-stream",
                },
            )
        except EndpointError as exc:
            if exc.status == 409 and exc.state is not None:
                return exc.state
            raise

    async def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> UploadState:
        try:
            response = await self._client.request(method, path, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise EndpointError(f"{method} {path}: {exc!r}", retry=True) from exc
        try:
            doc = json.loads(response.content)
        except ValueError:
            doc = {}
        if response.status_code == 200:
            try:
                return UploadState.model_validate(doc)
            except ValidationError as exc:
                raise EndpointError(f"{method} {path}: not an upload state", retry=True) from exc
        reason = str(doc.get("error") or response.reason_phrase) if isinstance(doc, dict) else ""
        state = None
        if isinstance(doc, dict) and isinstance(doc.get("state"), dict):
            try:
                state = UploadState.model_validate(doc["state"])
            except ValidationError:
                state = None
        code = response.status_code
        retry = code >= 500 or code in (408, 429)
        raise EndpointError(
            f"{method} {path}: {code} {reason}", retry=retry, status=code, state=state
        )
