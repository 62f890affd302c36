"""The controller's database: SQLAlchemy 2 async models and the `Database` handle.

SQL lives only in this package (and the Alembic migrations beside it)."""

from controller.store.base import Base, Database, UTCDateTime, utcnow

__all__ = ["Base", "Database", "UTCDateTime", "utcnow"]
