"""The quarantine page's XLSX is the owner's attachment: blocking rows, and last night's warnings apart."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from world import BAD_DATE_KEY, build_world

from sapnhap.reports.attachment import SHEET_WARNINGS, read_quarantine_workbook
from sapnhap.services import Services
from sapnhap.ui_queries import QuarantineFilter, quarantine_xlsx

pytestmark = pytest.mark.integration


def test_download_has_the_blocking_rows_and_last_nights_warnings(
    tmp_path: Path, platform_dsn: str, s3_config, smtp_sink
) -> None:
    world = build_world(tmp_path, Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0]))
    with psycopg.connect(platform_dsn) as conn:
        # A warn check that failed on a loaded record of last night's batch, as validate records it.
        conn.execute(
            """INSERT INTO ops.warnings (batch_id, source_id, dataset, source_key, expectation, column_name,
                                         value_masked, reason_vi, fix_vi)
               SELECT batch_id, source_id, dataset, 'BQ-OK0', 'expect_column_values_to_match_regex', 'applicant',
                      'T*** T*** B***', 'Họ tên có ký tự lạ', 'Sửa trên hệ thống cũ' FROM ops.batches WHERE run_id = %s""",
            (world.run_ids[-1],),
        )
    data = quarantine_xlsx(platform_dsn, QuarantineFilter(source_id=world.source.id))
    assert sorted(r["source_key"] for r in read_quarantine_workbook(data)) == sorted(
        ["BQ-WAIT1", "BQ-WAIT2", BAD_DATE_KEY])
    assert [r["source_key"] for r in read_quarantine_workbook(data, sheet=SHEET_WARNINGS)] == ["BQ-OK0"]

    only_warnings = quarantine_xlsx(platform_dsn, QuarantineFilter(source_id=world.source.id, severity="warn"))
    assert read_quarantine_workbook(only_warnings) == []
    assert len(read_quarantine_workbook(only_warnings, sheet=SHEET_WARNINGS)) == 1
