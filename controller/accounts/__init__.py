"""User accounts: roles, users, passwords, logins, browser sessions, API tokens and the
`cctv-controller user` commands. Nothing here knows about HTTP: `controller.api.auth`
wraps it for FastAPI, the command line calls it directly."""

from controller.accounts.errors import AccountError, LoginRefused, LoginThrottled
from controller.accounts.model import AuthSettings, LoginResult, SignedIn
from controller.accounts.roles import Role
from controller.accounts.users import Accounts

__all__ = [
    "AccountError",
    "Accounts",
    "AuthSettings",
    "LoginRefused",
    "LoginResult",
    "LoginThrottled",
    "Role",
    "SignedIn",
]
