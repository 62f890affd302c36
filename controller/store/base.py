"""`Base`, the `Database` handle and the column types every store module shares.

    db = Database("sqlite+aiosqlite:///controller.db")   # or postgresql+asyncpg://...
    await db.migrate()                                   # alembic upgrade head
    async with db.session() as session:                  # one transaction
        ...
        await session.commit()

SQLite: one file in WAL mode with foreign keys on; every transaction starts with
`BEGIN IMMEDIATE`, so there is exactly one writer at a time and a transaction that read
first and writes later can never fail on a stale snapshot (SQLite's `SQLITE_BUSY_SNAPSHOT`
under WAL). Readers of other processes are not blocked (WAL). PostgreSQL: the default
READ COMMITTED; code that must serialise (the audit chain) takes an advisory lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from controller.errors import StoreError

__all__ = [
    "DATABASE_ERRORS",
    "MIGRATIONS_DIR",
    "Base",
    "Database",
    "Session",
    "UTCDateTime",
    "is_unavailable",
    "utcnow",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: How long a SQLite writer waits for the lock before failing (seconds).
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Advisory lock key held while migrating PostgreSQL (several controllers may start at once).
_MIGRATE_LOCK = 0x43435456_0001
#: A session of `Database.session()`, for code above the store that passes one along.
Session = AsyncSession
#: The errors the database driver raises through SQLAlchemy (for handlers keyed by class).
DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError,)


def utcnow() -> datetime:
    return datetime.now(UTC)


#: SQLSTATEs that mean "not now" rather than "never" (PostgreSQL appendix A): class 08
#: connection exceptions, the server shutting down or starting up, too many connections,
#: and the two that ask for the transaction to be run again.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})
#: SQLite errors that pass (another writer holds the lock beyond the busy timeout).
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot do the work *now* (server down or
    restarting, connection lost, SQLite busy, a deadlock or serialisation failure): the
    same work is worth retrying later unchanged. False for errors that retrying cannot
    fix (bad SQL, a constraint, a wrong password, a missing database)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, OSError):  # refused, reset, unreachable, timed out
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
        ):
            return True
        if type(current).__module__ == "sqlite3" and any(
            text_ in str(current).lower() for text_ in _SQLITE_TRANSIENT
        ):
            return True
        todo += [
            current.__cause__,
            getattr(current, "orig", None),
            getattr(current, "driver_exception", None),
        ]
    return False


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps no zone: stored as naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC time is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every controller table."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the driver so "begin" below can say IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An async engine and session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 5) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError for junk
            raise StoreError(url, f"not a database URL ({exc})") from exc
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(url, "use sqlite+aiosqlite:///FILE or postgresql+asyncpg://...")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_size"] = pool_size
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One session; rolled back on error or when left without commit."""
        async with self.sessions() as session:
            yield session

    async def ping(self) -> None:
        """Return when the database answers a trivial query; raise when it cannot."""
        async with self.session() as session:
            await session.execute(text("SELECT 1"))

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema (Alembic, run programmatically) to `revision`."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))

        def upgrade(connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        try:
            async with self.engine.begin() as connection:
                await connection.run_sync(upgrade)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(self.url, f"migration failed: {exc}") from exc

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as connection:
            try:
                result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            except SQLAlchemyError:
                return None
            row = result.first()
            return None if row is None else str(row[0])

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.shield(self.dispose())

    def __repr__(self) -> str:
        return f"<Database {make_url(self.url).render_as_string(hide_password=True)}>"
