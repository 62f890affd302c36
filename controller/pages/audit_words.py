"""The audit log as people read it: each entry as a sentence ("operator1 acknowledged
callout #5 on unit cam-01"), with a link to what it is about, and the action types named
in words for the page's filter.

    words = entry_words(record)       # AuditWords: who, what, link, extra
    kind_choices(actions)             # [(value, label)]: families, then their actions

An action this table does not know still reads as words ("footage export staged"), never
as its code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from controller.accounts.permissions import Permission
from controller.accounts.roles import Role
from controller.pages.return_paths import Link
from controller.pages.unit_health import ACTION_WORDS

__all__ = ["FAMILIES", "AuditWords", "action_label", "entry_words", "kind_choices"]

#: The first part of an action -> the family's name in the filter.
FAMILIES = {
    "auth": "Signing in and out",
    "user": "Users",
    "token": "API tokens",
    "callout": "Callouts",
    "command": "Commands to units",
    "unit": "Units coming and going",
    "units": "Fleet inventory",
    "index": "Recording index checks",
    "deployment": "Deployments",
    "location": "Locations",
    "footage": "Footage",
    "snapshot": "Reference pictures",
}

#: Callout events: the verb, as "{who} {verb} callout #{id}".
_CALLOUT_VERBS = {
    "raised": "raised",
    "repeat": "noted the fault again on",
    "reopened": "reopened",
    "fault_cleared": "noted the fault cleared on",
    "unit_online": "noted the unit back online on",
    "respond_breached": "marked the respond deadline missed on",
    "repair_breached": "marked the repair deadline missed on",
    "acknowledged": "acknowledged",
    "attending": "marked as attending",
    "resolved": "resolved",
    "verified": "verified",
    "closed": "closed",
    "repair_failed": "sent back to attending (the fault is still there)",
    "not_verified": "could not verify",
}

#: Deployment steps: the verb, as "{who} {verb} deployment {id}".
_DEPLOYMENT_VERBS = {
    "create": "raised",
    "update": "edited",
    "submit": "submitted for a decision",
    "approve": "approved",
    "reject": "rejected",
    "revoke": "revoked",
    "end": "ended",
    "not_deployed": "closed as not deployed",
    "prior_consultation": "recorded the ICO's prior consultation on",
    "evaluation": "recorded the evaluation of",
    "renew": "renewed",
    "activate": "started",
    "expired": "ended at its planned end",
    "review_reminder": "sent the review reminder for",
    "lapsed": "lapsed (review overdue)",
}

#: Labels of single actions in the filter (others: their words).
_LABELS = {
    "auth.login": "Signed in",
    "auth.logout": "Signed out",
    "auth.login_failed": "Sign-in failed",
    "auth.login_refused": "Sign-in refused after failures",
    "user.add": "User added",
    "user.change": "Role changed",
    "user.password_set": "New password given",
    "user.disable": "User disabled",
    "user.enable": "User enabled",
    "token.create": "API token made",
    "token.revoke": "API token revoked",
    "unit.online": "Unit online",
    "unit.offline": "Unit offline",
    "unit.retire": "Unit retired",
    "units.import": "Inventory imported",
    "index.checkpoint_flagged": "Recording index failed its check",
    "footage.index_viewed": "Footage index viewed",
    "snapshot.received": "Reference picture received",
    "snapshot.viewed": "Reference picture viewed",
    "location.add": "Location added",
    "location.update": "Location changed",
    "location.retire": "Location retired",
}
_FAILED_SIGN_IN = {
    "bad_password": "wrong password",
    "unknown_user": "unknown username",
    "disabled": "the account is disabled",
    "rate_limited": "too many failed attempts",
}


@dataclass(frozen=True, slots=True)
class AuditWords:
    """One entry as a sentence: `who` then `text`, `link` to what it is about (its label is
    a part of the sentence; shown as a link to those who may open it), `extra` facts (a
    note, a reason) in words."""

    who: str
    text: str
    link: Link | None
    extra: tuple[str, ...]


def _words(code: str) -> str:
    return code.replace(".", " ").replace("_", " ").strip()


def action_label(action: str) -> str:
    """The action in the filter: "Callout acknowledged", "Signed in"."""
    if action in _LABELS:
        return _LABELS[action]
    family, _, step = action.partition(".")
    if family == "callout":
        return f"Callout {_CALLOUT_VERBS.get(step, _words(step))}".replace(" on", "").strip()
    if family == "deployment":
        return f"Deployment {_DEPLOYMENT_VERBS.get(step, _words(step))}".replace(" for", "")
    if family == "command":
        return f"Command: {ACTION_WORDS.get(step, _words(step)).lower()}"
    text = _words(action)
    return text[:1].upper() + text[1:]


def kind_choices(actions: list[str]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The filter's choices: (family value, family label, [(action, label)]) for the
    actions the log holds, families in the order of `FAMILIES`, then any other."""
    grouped: dict[str, list[str]] = {}
    for action in actions:
        grouped.setdefault(action.partition(".")[0], []).append(action)
    order = [f for f in FAMILIES if f in grouped] + sorted(set(grouped) - set(FAMILIES))
    return [
        (
            family,
            FAMILIES.get(family, _words(family).capitalize()),
            sorted(((a, action_label(a)) for a in grouped[family]), key=lambda c: c[1]),
        )
        for family in order
    ]


def _who(actor: str) -> str:
    if actor == "system":
        return "The controller"
    if actor == "anonymous":
        return "Someone"
    if actor.startswith("cli:"):
        return f"{actor[4:]} (on the command line)"
    return actor


def _subject(subject: str) -> tuple[str, str]:
    kind, _, ident = subject.partition(":")
    return kind, ident


def _role(value: Any) -> str:
    try:
        label = Role(str(value)).label
    except ValueError:
        return _words(str(value))
    return ("an " if label[0] in "aeiou" else "a ") + label


def entry_words(record: Any) -> AuditWords:
    """The sentence of one audit record (`controller.audit.AuditRecord`)."""
    action: str = record.action
    details: dict[str, Any] = record.details
    family, _, step = action.partition(".")
    kind, ident = _subject(record.subject)
    who = _who(record.actor)
    extra: list[str] = []
    link: Link | None = None
    text = ""
    unit = str(details.get("unit") or details.get("unit_id") or "")

    if family == "auth":
        user = ident if ident and ident != "(unknown)" else ""
        if step == "login":
            browser = " on a browser used before" if details.get("browser") == "known" else ""
            text = f"signed in{browser}"
        elif step == "logout":
            text = "signed out"
        elif step in ("login_failed", "login_refused"):
            reason = _FAILED_SIGN_IN.get(str(details.get("reason", "")), "")
            whom = f" as {user}" if user else " with an unknown username"
            text = f"could not sign in{whom}" + (f": {reason}" if reason else "")
        if details.get("client"):
            extra.append(f"From {details['client']}.")
        if user and step not in ("login", "logout"):
            link = Link(f"/users/{quote(user)}", user, Permission.VIEW_USERS)
    elif family == "user":
        link = Link(f"/users/{quote(ident)}", ident, Permission.VIEW_USERS)
        if step == "add":
            scope = f" for {details['contractor']}" if details.get("contractor") else ""
            text = f"added the user {ident} as {_role(details.get('role'))}{scope}"
        elif step == "change":
            parts = []
            role = details.get("role")
            if isinstance(role, dict):
                parts.append(f"role from {_role(role.get('from'))} to {_role(role.get('to'))}")
            contractor = details.get("contractor")
            if isinstance(contractor, dict):
                parts.append(
                    f"contractor from {contractor.get('from') or 'none'} to "
                    f"{contractor.get('to') or 'none'}"
                )
            text = f"changed {ident}'s " + " and ".join(parts or ["account"])
        elif step == "password_set":
            text = f"gave {ident} a new password"
        elif step in ("disable", "enable"):
            text = f"{step}d the account of {ident}"
    elif family == "token":
        name = f" “{details['name']}”" if details.get("name") else ""
        verb = "made the API token" if step == "create" else "revoked an API token"
        text = f"{verb}{name if step == 'create' else ''} of {ident}"
        link = Link(f"/users/{quote(ident)}", ident, Permission.VIEW_USERS)
    elif family == "callout":
        verb = _CALLOUT_VERBS.get(step, _words(step))
        on = f" on unit {unit}" if unit else ""
        text = f"{verb} callout #{ident}{on}"
        link = Link(f"/callouts/{quote(ident)}", f"callout #{ident}", Permission.VIEW_CALLOUTS)
        if details.get("note"):
            extra.append(f"Note: {details['note']}")
    elif family == "command":
        what = ACTION_WORDS.get(step, _words(step)).lower()
        text = (
            f"asked unit {ident} to run a self-test"
            if step == "selftest_now"
            else f"sent unit {ident} the command “{what}”"
        )
        link = Link(f"/units/{quote(ident)}", f"unit {ident}", Permission.VIEW_FLEET)
    elif family == "unit":
        link = Link(f"/units/{quote(ident)}", f"unit {ident}", Permission.VIEW_FLEET)
        if step in ("online", "offline"):
            who, link = "Unit", link._replace(label=ident)
            text = f"{ident} came online" if step == "online" else f"{ident} went offline"
        elif step == "retire":
            text = f"retired unit {ident}"
        if details.get("reason"):
            extra.append(f"Reason: {details['reason']}.")
    elif family == "units":
        counts = ", ".join(
            f"{len(v) if isinstance(v, list) else v} {_words(k)}"
            for k, v in details.items()
            if v and k in ("added", "updated")
        )
        text = "imported the fleet inventory" + (f" ({counts})" if counts else "")
    elif family == "index":
        who = "The recording index of"
        text = f"unit {ident} failed its check"
        link = Link(f"/units/{quote(ident)}", f"unit {ident}", Permission.VIEW_FLEET)
    elif family == "deployment":
        verb = _DEPLOYMENT_VERBS.get(step, _words(step))
        text = f"{verb} deployment {ident}" + (f" of unit {unit}" if unit else "")
        link = Link(
            f"/deployments/{quote(ident)}", f"deployment {ident}", Permission.VIEW_DEPLOYMENTS
        )
        if details.get("reason"):
            extra.append(f"Reason: {details['reason']}")
    elif family == "location":
        name = str(details.get("name") or "")
        verb = {"add": "added", "update": "changed", "retire": "retired"}.get(step, _words(step))
        text = f"{verb} the location" + (f" {name}" if name else "")
        link = Link(f"/locations/{quote(ident)}", "the location", Permission.VIEW_DEPLOYMENTS)
    elif family == "footage" and step == "index_viewed":
        text = f"viewed the footage index of unit {ident}"
        link = Link(f"/units/{quote(ident)}", f"unit {ident}", Permission.VIEW_FLEET)

    elif family == "snapshot" and step in ("received", "viewed"):
        link = Link(f"/units/{quote(ident)}", f"unit {ident}", Permission.VIEW_FLEET)
        if step == "received":
            who = f"Unit {ident}"
            asked = (
                f" asked for by {details['requested_by']}" if details.get("requested_by") else ""
            )
            text = f"sent the reference picture{asked}"
        else:
            text = f"viewed a reference picture of unit {ident}"
        if details.get("shows"):
            extra.append(f"The picture is {details['shows']}.")
        if details.get("sha256"):
            extra.append(f"SHA-256 {details['sha256']}.")

    if not text:  # an action this table does not know: still words, never its code
        about = f" ({_words(kind)} {ident})" if ident else ""
        text = f"{_words(action)}{about}"
    return AuditWords(who, text, link, tuple(extra))
