"""The owners' report reads a quarantine row's runs from ``ops.batches.run_id`` (issue 12), never
from the text of its batch ids: a batch id is an opaque key (a run id may hold any character)."""

from __future__ import annotations

from sapnhap.reports import assemble_owner_reports, should_send
from sapnhap.reports.model import QuarantineRow, summarize_checks
from sapnhap.sources import Source

RUN = "manual__2026-12-01T10:00:00|retry"  # a run id with the separator a parser would cut at


def _source() -> Source:
    return Source.model_validate({
        "id": "src_delta", "name": "Hệ thống thử nghiệm", "kind": "postgres", "conn_id": "src_delta",
        "old_units": {"province": "08"}, "owners": ["d@tinh.gov.vn"],
        "datasets": {"dossiers": {"table": "hs", "primary_key": ["id"], "columns": {"dossier_code": "ma_ho_so"}}},
    })


def _row(i: int, *, first_run: str | None, last_run: str | None, resolved_run: str | None = None,
         status: str = "open") -> dict:
    return {"quarantine_id": i, "source_id": "src_delta", "dataset": "dossiers", "source_key": f"K{i}",
            "expectation": "dossier_code.format", "column_name": "dossier_code", "value_masked": "HS-1",
            "reason_vi": "Mã hồ sơ sai", "fix_vi": "Sửa mã", "severity": "block", "status": status,
            # Opaque keys: what a run they belong to is, only ops.batches says.
            "first_batch_id": f"b-{i}-first", "last_batch_id": f"b-{i}-last",
            "resolved_batch_id": f"b-{i}-resolved" if resolved_run else None,
            "first_run_id": first_run, "last_run_id": last_run, "resolved_run_id": resolved_run}


def test_checks_of_this_run_are_counted_by_the_batches_run_id() -> None:
    rows = [QuarantineRow.from_ops(_row(1, first_run=RUN, last_run=RUN)),
            QuarantineRow.from_ops(_row(2, first_run="older", last_run=RUN)),
            QuarantineRow.from_ops(_row(3, first_run="older", last_run="older"))]
    (check,) = summarize_checks(rows, RUN)
    assert (check.count, check.new) == (2, 1)


def test_quarantine_changes_of_this_run_come_from_the_batches_run_id() -> None:
    quarantine = [_row(1, first_run="older", last_run="older", resolved_run=RUN, status="resolved"),
                  _row(2, first_run="older", last_run=RUN)]
    batches = [{"run_id": RUN, "batch_id": "b-9", "source_id": "src_delta", "dataset": "dossiers", "message": None,
                "status": "loaded", "extracted": 3, "unchanged": 3, "decision": "ok", "failed_ratio": 0.0}]
    (report,) = assemble_owner_reports(RUN, [_source()], batches=batches, quarantine=quarantine)
    assert report.quarantine_changes == 1  # resolved in this run; row 2 only seen again
    assert report.sources[0].resolved == 1
    assert should_send(report)[0]


def test_a_warning_belongs_to_the_run_of_its_batch() -> None:
    warning = {"warning_id": 7, "batch_id": "b-7", "run_id": RUN, "source_id": "src_delta", "dataset": "dossiers",
               "source_key": "K7", "expectation": "dossier_code.format", "column_name": "dossier_code",
               "value_masked": "HS-7", "reason_vi": "Mã hồ sơ sai", "fix_vi": None}
    row = QuarantineRow.from_warning(warning)
    assert (row.first_run_id, row.last_run_id) == (RUN, RUN)
    assert summarize_checks([row], RUN)[0].new == 1
