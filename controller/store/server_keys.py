"""Keys the controller signs things with, kept in the database so that every controller
process on it (and every restart) signs alike.

    server_keys      one row per key: its name and 256 random bits (URL-safe base64)

Today one key signs the login cookies (device cookies and sign-in forms,
`controller.accounts.logins`). A key is made on first use and never leaves the database and
the process; anyone who can read this table can forge those cookies, which gains no
access (they only decide which login limit applies), so it is kept like the rest of the
database, not apart.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from controller.store.base import Base, UTCDateTime

__all__ = ["ServerKeyRow", "server_key"]

KEY_BYTES = 32


class ServerKeyRow(Base):
    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: 256 random bits, URL-safe base64.
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def server_key(session: AsyncSession, name: str, *, now: datetime) -> bytes:
    """The key called `name`, made and flushed on first use. Two controllers making it at
    once: the second takes the first one's."""
    row = await session.get(ServerKeyRow, name)
    if row is None:
        made = ServerKeyRow(
            name=name,
            secret=base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"),
            created_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(made)
            row = made
        except IntegrityError:
            row = await session.get(ServerKeyRow, name, populate_existing=True)
            if row is None:  # pragma: no cover - the conflicting row cannot vanish
                raise
    return base64.urlsafe_b64decode(row.secret)
