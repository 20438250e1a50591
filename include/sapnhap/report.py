"""The emailed reports of a run (the nightly DAG's final task calls :func:`send_run_reports`).

Re-exports :mod:`sapnhap.reports`.
"""

from sapnhap.reports import (
    OwnerReport,
    QuarantineRow,
    ReportDeliveryError,
    assemble_owner_reports,
    build_owner_email,
    read_quarantine_workbook,
    render_assessment_email,
    send_run_reports,
    should_send,
)

__all__ = [
    "OwnerReport",
    "QuarantineRow",
    "ReportDeliveryError",
    "assemble_owner_reports",
    "build_owner_email",
    "read_quarantine_workbook",
    "render_assessment_email",
    "send_run_reports",
    "should_send",
]
