"""Argon2id password hashes, computed off the event loop.

`Passwords` is shared by the logins (checking) and by user management (setting). An
unknown username costs as much time as a wrong password (`spend_like_a_check`), so timing
does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from controller.accounts.model import AuthSettings

__all__ = ["Passwords"]


class Passwords:
    """Hash and check passwords with the Argon2id cost of `settings`."""

    def __init__(self, settings: AuthSettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def check(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    async def spend_like_a_check(self, password: str) -> None:
        """Take as long as checking a password, for a username that does not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.check(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a stored hash was made with other parameters than the current ones."""
        return self.hasher.check_needs_rehash(password_hash)
