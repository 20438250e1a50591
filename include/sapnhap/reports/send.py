"""The final task of the nightly run: email every owner what happened to their sources."""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import getaddresses

from sapnhap import db
from sapnhap.reports.mail import build_owner_email, wire_bytes
from sapnhap.reports.model import assemble_owner_reports, mask_email, should_send
from sapnhap.reports.queries import fetch_run_data
from sapnhap.services import Services, SmtpConfig
from sapnhap.sources import Source

log = logging.getLogger(__name__)


class ReportDeliveryError(RuntimeError):
    """The mail server refused or could not be reached; names the server and what was not sent."""


def send_messages(smtp: SmtpConfig, messages: Sequence[EmailMessage], *, what: str = "report emails") -> None:
    """Send over one SMTP session (STARTTLS and login if configured); raise ReportDeliveryError."""
    sent = 0
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as server:
            if smtp.starttls:
                server.starttls(context=ssl.create_default_context())
            if smtp.user:
                server.login(smtp.user, smtp.password or "")
            for msg in messages:
                recipients = [addr for _, addr in getaddresses([str(msg["To"])]) if addr]
                server.sendmail(smtp.from_addr, recipients, wire_bytes(msg))
                sent += 1
    except (OSError, smtplib.SMTPException) as exc:
        raise ReportDeliveryError(
            f"SMTP {smtp.host}:{smtp.port}: sent {sent} of {len(messages)} {what}, then failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def send_run_reports(services: Services, run_id: str, sources: list[Source]) -> dict:
    """Email each owner of ``sources`` one report of run ``run_id``; return what was sent and skipped.

    Data problems (blocked loads, sources that failed or have no batch, odd counts) are what
    the report is for: they never make this fail. A mail server that cannot be reached or
    refuses a message raises :class:`ReportDeliveryError`.

    Returns ``{"run_id", "sent": [{"to", "subject", "sources", "attachment_rows"}],
    "skipped": [{"to", "sources", "reason"}]}``.
    """
    source_ids = sorted({s.id for s in sources})
    with db.connect(services.platform_dsn, "report") as conn:
        data = fetch_run_data(conn, run_id, source_ids)
    reports = assemble_owner_reports(
        run_id, sources, batches=data.batches, reconciliation=data.reconciliation, quarantine=data.quarantine,
        history=data.history, cursors=data.cursors, run_started_at=data.run_started_at,
    )
    to_send: list[tuple[EmailMessage, dict]] = []
    skipped = []
    for report in reports:
        send, reason = should_send(report)
        if not send:
            skipped.append({"to": report.owner, "sources": report.source_ids, "reason": reason})
            log.info("report of %s to %s skipped: %s", run_id, mask_email(report.owner), reason)
            continue
        msg = build_owner_email(report, from_addr=services.smtp.from_addr)
        to_send.append((msg, {"to": report.owner, "subject": str(msg["Subject"]), "sources": report.source_ids,
                              "attachment_rows": len(report.open_rows)}))
        log.info("report of %s to %s: sources %s, state %s, %d open quarantine rows (%s)", run_id,
                 mask_email(report.owner), ",".join(report.source_ids), report.state, len(report.open_rows), reason)
    if to_send:
        send_messages(services.smtp, [m for m, _ in to_send])
    log.info("run %s: %d report emails sent, %d skipped", run_id, len(to_send), len(skipped))
    return {"run_id": run_id, "sent": [s for _, s in to_send], "skipped": skipped}
