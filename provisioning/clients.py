"""Centre client identities: the controller(s), load simulator(s) and other control-room
clients, as opposed to camera units.

The broker makes a client's certificate CN both its username and its MQTT client id (see
`provisioning.broker`), so one certificate holds exactly one MQTT session: a second
connection with the same certificate takes the session over and disconnects the first.
Every centre-side process that connects at the same time as another therefore needs an
identity of its own: `controller`, `controller-2`, ... for controllers sharing the load
through an MQTT v5 shared subscription, `simulator`, `simulator-2`, ... for simulator
connections.

A name says its role when it is `controller`/`simulator` or starts with `controller-`/
`simulator-`; any other name (e.g. `probe-1`) is given a role explicitly. The ACL grants
rights by role to every valid identity, and a name is never both a unit and a centre client.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protocol.topics import RESERVED_IDS, UNIT_ID_PATTERN
from provisioning.errors import InvalidInput
from provisioning.pki import Role

__all__ = ["CENTRE_ROLES", "ClientIdentity", "centre_role", "check_client_name", "role_named_by"]

#: Roles of centre clients, in the order the ACL lists them.
CENTRE_ROLES = (Role.CONTROLLER, Role.SIMULATOR)


@dataclass(frozen=True)
class ClientIdentity:
    """What an MQTT client needs to connect: its cert/key and the CA to check the broker."""

    name: str
    cert_file: Path
    key_file: Path
    ca_file: Path


def check_client_name(name: str) -> str:
    """Return `name` if it can be a centre client's CN, broker username and client id."""
    if not UNIT_ID_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid client name {name!r}: 1-63 characters of lower-case letters, digits, "
            "'-' and '_', starting with a letter or digit"
        )
    if name in RESERVED_IDS and not role_named_by(name):
        raise InvalidInput(f"{name!r} is reserved and cannot be a client identity")
    return name


def role_named_by(name: str) -> Role | None:
    """The centre role a name carries (`controller`, `simulator-2`, ...), else None."""
    for role in CENTRE_ROLES:
        if name == role.value or name.startswith(f"{role.value}-"):
            return role
    return None


def centre_role(name: str, role: Role | None = None) -> Role:
    """The role of centre client `name`: the one its name says, else `role` (required).

    Raises InvalidInput for a bad name, a role that is not a centre role, a missing role,
    or a role that contradicts the name."""
    check_client_name(name)
    if role is not None and role not in CENTRE_ROLES:
        raise InvalidInput(
            f"role {role.value!r} is not a centre client role; choose one of "
            f"{', '.join(r.value for r in CENTRE_ROLES)}"
        )
    named = role_named_by(name)
    if named is not None and role is not None and role is not named:
        raise InvalidInput(f"{name!r} names a {named.value} identity, not a {role.value} one")
    chosen = named or role
    if chosen is None:
        raise InvalidInput(
            f"give the role of client {name!r} ("
            f"{', '.join(r.value for r in CENTRE_ROLES)}); names starting "
            "'controller' or 'simulator' carry their role"
        )
    return chosen
