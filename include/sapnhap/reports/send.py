"""The final task of the nightly run: email every owner what happened to their sources, through the outbox."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import getaddresses

from sapnhap import db
from sapnhap.reports import outbox
from sapnhap.reports.mail import build_owner_email, wire_bytes
from sapnhap.reports.model import assemble_owner_reports, mask_email, should_send
from sapnhap.reports.outbox import ReportDeliveryError, smtp_session
from sapnhap.reports.queries import fetch_run_data, fetch_unreported_batches
from sapnhap.services import Services, SmtpConfig
from sapnhap.sources import Source

log = logging.getLogger(__name__)


def send_messages(smtp: SmtpConfig, messages: Sequence[EmailMessage], *, what: str = "report emails") -> None:
    """Send over one SMTP session (STARTTLS and login if configured); raise ReportDeliveryError.

    For emails that are not kept in the outbox (notices of an invalid source file).
    """
    sent = 0
    try:
        with smtp_session(smtp) as server:
            for msg in messages:
                recipients = [addr for _, addr in getaddresses([str(msg["To"])]) if addr]
                server.sendmail(smtp.from_addr, recipients, wire_bytes(msg))
                sent += 1
    except (OSError, smtplib.SMTPException) as exc:
        raise ReportDeliveryError(
            f"SMTP {smtp.host}:{smtp.port}: sent {sent} of {len(messages)} {what}, then failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def queue_run_reports(services: Services, run_id: str, sources: list[Source]) -> dict:
    """Store this run's report of each owner in ``ops.outbox`` (once per run and owner); send nothing.

    A report covers the run's batches and every committed batch of the owner's sources that no
    earlier report to them covered. An owner whose report is already stored is left alone (a
    rerun of the task sends the stored bytes, not a rebuilt copy). An owner with nothing new
    gets a ``skipped`` row: the batches it covers are not reported again.

    Returns ``{"run_id", "queued": [...], "skipped": [...], "existing": [...]}``.
    """
    source_ids = sorted({s.id for s in sources})
    owners = sorted({o.strip().lower() for s in sources for o in s.owners})
    with db.connect(services.platform_dsn, "report") as conn:
        todo = [o for o in owners if not outbox.exists(conn, outbox.report_key(run_id, o))]
        existing = [o for o in owners if o not in todo]
        if not todo:
            return {"run_id": run_id, "queued": [], "skipped": [], "existing": existing}
        data = fetch_run_data(conn, run_id, source_ids)
        unreported = fetch_unreported_batches(conn, run_id, source_ids, todo)
    reports = assemble_owner_reports(
        run_id, sources, batches=data.batches, reconciliation=data.reconciliation, quarantine=data.quarantine,
        history=data.history, cursors=data.cursors, run_started_at=data.run_started_at, warnings=data.warnings,
        unreported=unreported, verifications=data.verifications,
        quarantined_files=data.quarantined_files,
    )
    queued, skipped = [], []
    with db.connect(services.platform_dsn, "report", autocommit=True) as conn:
        for report in reports:
            if report.owner not in todo:
                continue
            key = outbox.report_key(run_id, report.owner)
            meta = {"sources": report.source_ids, "attachment_rows": len(report.open_rows),
                    "warning_rows": len(report.warning_rows), "earlier_batches": len(report.earlier)}
            send, reason = should_send(report)
            if not send:
                outbox.enqueue(conn, kind=outbox.OWNER_REPORT, dedup_key=key, run_id=run_id, recipient=report.owner,
                               msg=None, batch_ids=report.covered_batch_ids, meta={**meta, "reason": reason})
                skipped.append({"to": report.owner, "sources": report.source_ids, "reason": reason})
                log.info("report of %s to %s skipped: %s", run_id, mask_email(report.owner), reason)
                continue
            msg = build_owner_email(report, from_addr=services.smtp.from_addr)
            if outbox.enqueue(conn, kind=outbox.OWNER_REPORT, dedup_key=key, run_id=run_id, recipient=report.owner,
                              msg=msg, batch_ids=report.covered_batch_ids, meta=meta):
                queued.append({"to": report.owner, "subject": str(msg["Subject"]), "sources": report.source_ids,
                               "attachment_rows": len(report.open_rows)})
            log.info("report of %s to %s: sources %s, state %s, %d open quarantine rows, %d earlier batches (%s)",
                     run_id, mask_email(report.owner), ",".join(report.source_ids), report.state,
                     len(report.open_rows), len(report.earlier), reason)
    return {"run_id": run_id, "queued": queued, "skipped": skipped, "existing": existing}


def _stored_reports(dsn: str, run_id: str) -> list[dict]:
    with db.connect(dsn, "report") as conn:
        rows = conn.execute(
            """SELECT recipient, subject, meta, status FROM ops.outbox
               WHERE kind = %s AND run_id = %s ORDER BY recipient""",
            (outbox.OWNER_REPORT, run_id),
        ).fetchall()
    return [{"to": r[0], "subject": r[1], "meta": r[2] or {}, "status": r[3]} for r in rows]


def send_run_reports(services: Services, run_id: str, sources: list[Source]) -> dict:
    """The nightly report task: store each owner's report of ``run_id`` in the outbox, then send every pending email.

    Pending emails of earlier runs (a mail outage, a task that died mid-list) go out too,
    each exactly once. Data problems (blocked loads, failed sources, odd counts) are what the
    report is for: they never make this fail. An email the mail server did not take raises
    :class:`ReportDeliveryError` after the others were tried; it stays pending for the retry.

    Returns ``{"run_id", "sent": [{"to", "subject", "sources", "attachment_rows", "status"}],
    "skipped": [{"to", "sources", "reason"}], "delivered": n, "pending": n}`` where ``sent``
    lists this run's reports (``status``: sent, or pending when the mail server failed).
    """
    queued = queue_run_reports(services, run_id, sources)
    delivery = outbox.deliver_pending(services.platform_dsn, services.smtp)
    stored = _stored_reports(services.platform_dsn, run_id)
    reports = [
        {"to": r["to"], "subject": r["subject"], "sources": r["meta"].get("sources", []),
         "attachment_rows": r["meta"].get("attachment_rows", 0), "status": r["status"]}
        for r in stored if r["status"] != "skipped"
    ]
    skipped = [{"to": r["to"], "sources": r["meta"].get("sources", []), "reason": r["meta"].get("reason", "")}
               for r in stored if r["status"] == "skipped"]
    log.info("run %s: %d reports queued, %d skipped, %d emails delivered, %d failed", run_id,
             len(queued["queued"]), len(skipped), len(delivery.sent), len(delivery.failed))
    outbox.raise_if_undelivered(delivery, services.smtp)
    return {"run_id": run_id, "sent": reports, "skipped": skipped, "delivered": len(delivery.sent),
            "pending": delivery.pending_at_start - len(delivery.sent)}
