"""The outbox of owner emails (``ops.outbox``): stored before sending, sent once, retried until delivered.

Every email to an owner (nightly report, source assessment) is written to ``ops.outbox`` with
its final bytes and a Message-ID derived from what it is (``dedup_key``: kind, run or source,
recipient), before any SMTP traffic. :func:`deliver_pending` then sends every row still
pending, oldest first, one row lock per message: a message is marked sent in the same
transaction that held it while it went out, so a retry after a partial send resumes with the
first unsent message, and two delivering tasks never send the same row.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sapnhap.reports.mail import wire_bytes
from sapnhap.services import SmtpConfig

log = logging.getLogger(__name__)

OWNER_REPORT = "owner_report"
ASSESSMENT = "assessment"
_DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")
MAX_ERROR_CHARS = 500

# Errors of one message (the server refused this sender, recipient or content): the next
# message may still go. Anything else (connection lost, timeout) ends the session.
_PER_MESSAGE_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


class ReportDeliveryError(RuntimeError):
    """The mail server refused or could not be reached; names the server and what was not sent."""


def stable_message_id(dedup_key: str) -> str:
    """The Message-ID of an outbox email: a digest of its key, letters only (no ID-like digit runs, no PII)."""
    digest = hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest.translate(_DIGITS_TO_LETTERS)}@sapnhap.report>"


def report_key(run_id: str, owner: str) -> str:
    """The outbox key of an owner's nightly report: one per (run, owner)."""
    return f"{OWNER_REPORT}|{run_id}|{owner.strip().lower()}"


def assessment_key(source_id: str) -> str:
    """The outbox key of a source's assessment (one message to all its owners): one per source."""
    return f"{ASSESSMENT}|{source_id}"


def exists(conn: psycopg.Connection, dedup_key: str) -> bool:
    """True when the outbox already holds this email (pending, sent or skipped)."""
    return conn.execute("SELECT 1 FROM ops.outbox WHERE dedup_key = %s", (dedup_key,)).fetchone() is not None


def enqueue(
    conn: psycopg.Connection,
    *,
    kind: str,
    dedup_key: str,
    run_id: str,
    recipient: str,
    msg: EmailMessage | None,
    batch_ids: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
) -> bool:
    """Store one email (``msg``; ``None`` records a report deliberately not sent); True if new.

    The message gets the stable Message-ID of its key. A key already stored is left as it is:
    the email that was (or will be) sent is the one stored first.
    """
    status = "pending" if msg is not None else "skipped"
    message_id = stable_message_id(dedup_key)
    data = None
    subject = ""
    if msg is not None:
        del msg["Message-ID"]
        msg["Message-ID"] = message_id
        data = wire_bytes(msg)
        subject = str(msg["Subject"])
    row = conn.execute(
        """INSERT INTO ops.outbox (kind, dedup_key, run_id, recipient, message_id, subject, message, batch_ids, meta,
                                   status)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (dedup_key) DO NOTHING RETURNING outbox_id""",
        (kind, dedup_key, run_id, recipient.strip().lower(), message_id, subject, data, list(batch_ids),
         Jsonb(meta or {}), status),
    ).fetchone()
    return row is not None


@contextmanager
def smtp_session(smtp: SmtpConfig) -> Iterator[smtplib.SMTP]:
    """One SMTP session (STARTTLS and login if configured)."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as server:
        if smtp.starttls:
            server.starttls(context=ssl.create_default_context())
        if smtp.user:
            server.login(smtp.user, smtp.password or "")
        yield server


def recipients_of(data: bytes) -> list[str]:
    """The addresses of the To header of stored message bytes."""
    from email import message_from_bytes
    from email import policy as email_policy

    msg = message_from_bytes(data, policy=email_policy.compat32)
    return [addr for _, addr in getaddresses([str(msg["To"] or "")]) if addr]


@dataclass
class Delivery:
    """What one :func:`deliver_pending` call did."""

    pending_at_start: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return not self.failed and self.error is None


def _pending_count(dsn: str, kinds: Sequence[str]) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM ops.outbox WHERE status = 'pending' AND kind = ANY(%s)", (list(kinds),)
        ).fetchone()[0]


def deliver_pending(dsn: str, smtp: SmtpConfig, *, kinds: Sequence[str] = (OWNER_REPORT, ASSESSMENT)) -> Delivery:
    """Send every pending outbox email of these kinds (every run's, oldest first); never raises for SMTP.

    Each message is locked (``FOR UPDATE SKIP LOCKED``), sent, and marked sent in one
    transaction; a refused or failed message keeps ``pending`` with ``attempts`` and
    ``last_error`` updated. A lost connection ends this delivery; the rest stays pending for
    the next one.
    """
    result = Delivery(pending_at_start=_pending_count(dsn, kinds))
    if not result.pending_at_start:
        return result
    tried: list[int] = []
    server_cm = None
    server: smtplib.SMTP | None = None
    try:
        with psycopg.connect(dsn) as conn:
            while True:
                with conn.transaction():
                    row = conn.execute(
                        """SELECT outbox_id, dedup_key, recipient, subject, message FROM ops.outbox
                           WHERE status = 'pending' AND kind = ANY(%s) AND NOT (outbox_id = ANY(%s))
                           ORDER BY created_at, outbox_id LIMIT 1 FOR UPDATE SKIP LOCKED""",
                        (list(kinds), tried),
                    ).fetchone()
                    if row is None:
                        break
                    outbox_id, dedup_key, recipient, subject, data = row
                    tried.append(outbox_id)
                    error: BaseException | None = None
                    try:
                        if server is None:
                            session = smtp_session(smtp)
                            server = session.__enter__()
                            server_cm = session
                        server.sendmail(smtp.from_addr, recipients_of(bytes(data)) or [recipient], bytes(data))
                    except (OSError, smtplib.SMTPException) as exc:
                        error = exc
                    if error is None:
                        conn.execute(
                            """UPDATE ops.outbox SET status = 'sent', sent_at = now(), last_attempt_at = now(),
                                   attempts = attempts + 1, last_error = NULL WHERE outbox_id = %s""",
                            (outbox_id,),
                        )
                        result.sent.append({"outbox_id": outbox_id, "dedup_key": dedup_key, "to": recipient,
                                            "subject": subject})
                        continue
                    text = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
                    conn.execute(
                        """UPDATE ops.outbox SET attempts = attempts + 1, last_attempt_at = now(), last_error = %s
                           WHERE outbox_id = %s""",
                        (text, outbox_id),
                    )
                    result.failed.append({"outbox_id": outbox_id, "dedup_key": dedup_key, "to": recipient,
                                          "error": text})
                    result.error = text
                if not isinstance(error, _PER_MESSAGE_ERRORS):
                    break
    finally:
        if server_cm is not None:
            try:
                server_cm.__exit__(None, None, None)
            except (OSError, smtplib.SMTPException):
                pass  # the session is gone already; what was sent is recorded
    log.info("outbox: %d sent, %d failed of %d pending", len(result.sent), len(result.failed), result.pending_at_start)
    return result


def raise_if_undelivered(result: Delivery, smtp: SmtpConfig, *, what: str = "report emails") -> None:
    """Raise :class:`ReportDeliveryError` when a delivery left messages pending because of a failure."""
    if result.error is not None:
        raise ReportDeliveryError(
            f"SMTP {smtp.host}:{smtp.port}: sent {len(result.sent)} of {result.pending_at_start} {what}, then failed: "
            f"{result.error}; the rest stays in ops.outbox and is sent by the next report task"
        )
