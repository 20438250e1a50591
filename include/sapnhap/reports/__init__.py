"""Emailed data-quality reports: one Vietnamese email per owner per run, and source assessments.

Layers: :mod:`.queries` reads ``ops``; :mod:`.model` turns rows into masked reports (pure);
:mod:`.chart` and :mod:`.attachment` render the chart and the workbook; :mod:`.mail` builds
the messages (pure); :mod:`.outbox` stores every owner email before sending it and sends what is
pending; :mod:`.send` is the DAG's final task.
"""

from sapnhap.reports.attachment import quarantine_workbook, read_quarantine_workbook
from sapnhap.reports.chart import pass_rate_chart, pass_rates
from sapnhap.reports.mail import build_owner_email, owner_subject, render_assessment_email
from sapnhap.reports.model import (
    OwnerReport,
    QuarantineRow,
    assemble_owner_reports,
    scrub_text,
    should_send,
)
from sapnhap.reports.outbox import deliver_pending
from sapnhap.reports.send import ReportDeliveryError, queue_run_reports, send_run_reports

__all__ = [
    "OwnerReport",
    "QuarantineRow",
    "ReportDeliveryError",
    "assemble_owner_reports",
    "build_owner_email",
    "deliver_pending",
    "owner_subject",
    "pass_rate_chart",
    "pass_rates",
    "quarantine_workbook",
    "queue_run_reports",
    "read_quarantine_workbook",
    "render_assessment_email",
    "scrub_text",
    "send_run_reports",
    "should_send",
]
