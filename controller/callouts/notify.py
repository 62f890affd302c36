"""Notifications to the maintenance contractor: email (SMTP) and webhooks (HTTP POST JSON).

`queue_notifications(...)` writes one `Notification` row per recipient in the same
transaction as the callout change, so a crash between the two cannot lose one. The
`Notifier` delivers pending rows after commit (woken by whoever committed them, or every
`poll_s`): email through the standard `smtplib` in a worker thread, webhooks with httpx;
each failure is recorded and retried with capped exponential backoff and full jitter
(`controller.backoff`) up to `webhooks.attempts` times, then marked failed.
Nothing here raises into the service loop.

Webhook body: {"event": "callout.new" | "callout.respond_breached" | ..., "callout": {...}};
with `webhooks.secret` set, header `X-CCTV-Signature: sha256=<hex HMAC of the body>`.
The body carries times as UTC ISO-8601 and the fault's title and advice beside its code;
an email reads in words, its times in the control room's zone (`timezone`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import localtime
from controller.backoff import full_jitter
from controller.labels import fault_label, priority_words, status_words
from controller.metrics import ControllerMetrics
from controller.store.base import Database, utcnow
from controller.store.fleet import Callout, Notification

if TYPE_CHECKING:
    from controller.config import ControllerSettings

__all__ = ["Notifier", "callout_payload", "email_text", "queue_notifications"]

log = logging.getLogger(__name__)

_REASON_TEXT = {
    "new": "New callout",
    "respond_breached": "RESPOND SLA BREACHED",
    "repair_breached": "REPAIR SLA BREACHED",
    "repair_failed": "REPAIR DID NOT HOLD",
}


def callout_payload(callout: Callout) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    label = fault_label(callout.fault_code)
    return {
        "id": callout.id,
        "unit_id": callout.unit_id,
        "fault_code": callout.fault_code,
        "fault_title": label.title,
        "advice": label.advice,
        "priority": callout.priority,
        "status": callout.status,
        "title": callout.title,
        "contractor": callout.contractor,
        "check": callout.check_name,
        "detail": callout.detail,
        "facts": callout.facts,
        "raised_at": iso(callout.raised_at),
        "respond_by": iso(callout.respond_by),
        "repair_by": iso(callout.repair_by),
        "respond_breached": callout.respond_breached,
        "repair_breached": callout.repair_breached,
    }


_POWER_WORDS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "charge_pct": ("Battery charge", lambda v: f"{float(v):.0f}%"),
    "runtime_s": ("Battery time left", lambda v: localtime.duration_words(float(v))),
    "ups_status": ("UPS status", str),
    "input_voltage": ("Input voltage", lambda v: f"{float(v):.0f} V"),
    "load_pct": ("Load", lambda v: f"{float(v):.0f}%"),
    "model": ("UPS model", str),
}


def email_text(reason: str, callout: dict[str, Any], zone: ZoneInfo) -> str:
    """The body of a callout email: the fault in words, what to check, the deadlines in
    the control room's zone, and the power facts of a power fault."""

    def when(value: str | None) -> str:
        return "not set" if not value else localtime.when(datetime.fromisoformat(value), zone)

    label = fault_label(str(callout["fault_code"]))
    lines = [
        f"{_REASON_TEXT.get(reason, reason)} for unit {callout['unit_id']}.",
        "",
        f"Fault:          {label.title} ({priority_words(str(callout['priority']))})",
        f"What to check:  {label.advice}",
        f"State:          {status_words(str(callout.get('status', '')))}",
        f"Raised:         {when(callout.get('raised_at'))}",
        f"Respond by:     {when(callout.get('respond_by'))}",
        f"Repair by:      {when(callout.get('repair_by'))}",
    ]
    if callout.get("detail"):
        lines.append(f"Detail:         {callout['detail']}")
    ups = (callout.get("facts") or {}).get("ups")
    if ups:
        lines += ["", "Power at the time:"]
        for key, (name, show) in _POWER_WORDS.items():
            value = ups.get(key)
            if value is not None and value != "":
                lines.append(f"  {name}: {show(value)}")
        if ups.get("on_battery") is not None:
            lines.append(f"  Running on: {'battery' if ups['on_battery'] else 'mains'}")
    return "\n".join(lines) + "\n"


async def queue_notifications(
    session: AsyncSession, settings: ControllerSettings, callout: Callout, reason: str
) -> list[Notification]:
    """One pending notification per email address and webhook of the callout's contract
    (returned: the caller wakes the `Notifier` after its commit when there are any)."""
    contract = settings.contract(callout.contractor)
    payload = {"event": f"callout.{reason}", "callout": callout_payload(callout)}
    now = utcnow()
    rows = [
        Notification(
            callout_id=callout.id,
            channel=channel,
            target=target,
            reason=reason,
            status="pending",
            attempts=0,
            last_error="",
            payload=payload,
            created_at=now,
            next_attempt_at=now,
        )
        for channel, targets in (("email", contract.emails), ("webhook", contract.webhook_urls))
        for target in targets
    ]
    session.add_all(rows)
    return rows


@dataclass(frozen=True, slots=True)
class _Job:
    id: int
    channel: str
    target: str
    reason: str
    attempts: int
    payload: dict[str, Any]


class DeliveryFailed(Exception):
    """One attempt failed (kept inside this module: recorded on the row, then retried)."""


class Notifier:
    def __init__(
        self,
        db: Database,
        settings: ControllerSettings,
        *,
        metrics: ControllerMetrics | None = None,
        poll_s: float = 2.0,
    ) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.poll_s = poll_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Deliver now: call after committing queued notifications."""
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    await self.deliver_due(http)
                except Exception:  # a database hiccup must not stop deliveries for good
                    log.exception("notification pass failed")
                try:
                    async with asyncio.timeout(self.poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()

    async def deliver_due(self, http: httpx.AsyncClient, limit: int = 50) -> int:
        now = utcnow()
        async with self.db.session() as session:
            rows = (
                await session.execute(
                    select(Notification)
                    .where(Notification.status == "pending", Notification.next_attempt_at <= now)
                    .order_by(Notification.id)
                    .limit(limit)
                )
            ).scalars()
            jobs = [_Job(r.id, r.channel, r.target, r.reason, r.attempts, r.payload) for r in rows]
        # Send outside any transaction: a slow mail server must not hold the database.
        results = await asyncio.gather(*(self._attempt(http, job) for job in jobs))
        async with self.db.session() as session:
            for job, error in zip(jobs, results, strict=True):
                row = await session.get(Notification, job.id)
                if row is None:
                    continue
                row.attempts = job.attempts + 1
                if error is None:
                    row.status, row.sent_at, row.last_error = "sent", utcnow(), ""
                    row.next_attempt_at = None
                elif row.attempts >= self.settings.webhooks.attempts:
                    row.status, row.last_error, row.next_attempt_at = "failed", error[:500], None
                    log.error(
                        "notification failed id=%s channel=%s error=%s", job.id, job.channel, error
                    )
                else:
                    delay = full_jitter(row.attempts - 1, base=self.settings.webhooks.backoff_s)
                    row.last_error = error[:500]
                    row.next_attempt_at = utcnow() + timedelta(seconds=delay)
                if self.metrics:
                    result = "sent" if error is None else row.status
                    self.metrics.notifications.labels(job.channel, result).inc()
            await session.commit()
        return len(jobs)

    async def _attempt(self, http: httpx.AsyncClient, job: _Job) -> str | None:
        try:
            if job.channel == "email":
                await self._email(job)
            else:
                await self._webhook(http, job)
        except DeliveryFailed as exc:
            return str(exc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    async def _webhook(self, http: httpx.AsyncClient, job: _Job) -> None:
        body = json.dumps(job.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "cctv-controller"}
        secret = self.settings.webhooks.secret
        if secret is not None:
            digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256)
            headers["X-CCTV-Signature"] = f"sha256={digest.hexdigest()}"
        timeout = self.settings.webhooks.timeout_s
        try:
            async with asyncio.timeout(timeout + 1):
                response = await http.post(
                    job.target, content=body, headers=headers, timeout=timeout
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise DeliveryFailed(f"webhook {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryFailed(f"webhook answered HTTP {response.status_code}")

    async def _email(self, job: _Job) -> None:
        smtp = self.settings.smtp
        if smtp is None:
            raise DeliveryFailed("no [smtp] settings: cannot send email")
        callout = job.payload["callout"]
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = job.target
        message["Subject"] = (
            f"[{callout['priority']}] {_REASON_TEXT.get(job.reason, job.reason)}: "
            f"{callout['unit_id']} {callout['title']} (callout #{callout['id']})"
        )
        message.set_content(email_text(job.reason, callout, self.settings.zone))

        def send() -> None:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
                if smtp.starttls:
                    client.starttls()
                if smtp.username and smtp.password:
                    client.login(smtp.username, smtp.password.get_secret_value())
                client.send_message(message)

        try:
            async with asyncio.timeout(smtp.timeout_s * 2):
                await asyncio.to_thread(send)
        except (smtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"smtp {type(exc).__name__}: {exc}") from exc
