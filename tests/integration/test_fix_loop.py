"""The fix loop end to end: quarantine -> owner email with XLSX -> corrected file returned -> loaded.

Real services: PostgreSQL (platform), moto's S3 API (backups, landing prefix), aiosmtpd (mail);
the legacy system is a SQLite file shaped like the Bắc Quang source.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import psycopg
import pytest
from openpyxl import load_workbook

from sapnhap import storage
from sapnhap.corrections import correction_prefix
from sapnhap.embedded import read_mail
from sapnhap.pipeline import backup_stage, extract_stage, load_stage, prepare_run, transform_stage, validate_stage
from sapnhap.reports import send_run_reports
from sapnhap.services import Services
from sapnhap.sources import get_source

pytestmark = pytest.mark.integration

ROWS = [
    # file_no, recv_date, due_date, last_modified
    ("BQ-1", "03/03/2024", "10/03/2024", "2024-03-03 08:00:00"),
    ("BQ-2", "31/02/2024", "10/03/2024", "2024-03-04 08:00:00"),  # no such day: quarantined
]


def _legacy(path: Path) -> str:
    with sqlite3.connect(path) as db:
        db.execute(
            """CREATE TABLE dossiers (file_no TEXT PRIMARY KEY, proc_code TEXT, proc_name TEXT, applicant TEXT,
               id_number TEXT, commune_code TEXT, address TEXT, recv_date TEXT, due_date TEXT, return_date TEXT,
               status TEXT, last_modified TEXT)"""
        )
        db.executemany(
            "INSERT INTO dossiers VALUES (?, '1.000', 'Chứng thực bản sao', 'Trần Thị Bình', '002301012345', '01000',"
            " 'Thôn Khuổi Lác', ?, ?, NULL, 'RECEIVED', ?)",
            ROWS,
        )
    return f"sqlite://{path}"


def _sync(services: Services, source, connection: str, run_id: str) -> dict:
    batch = extract_stage(services, source, "dossiers", connection, run_id=run_id, run_date="2026-11-20")
    for stage in (transform_stage, validate_stage, backup_stage):
        batch = stage(services, source, batch)
    return load_stage(services, source, batch)


def test_owner_correction_leaves_quarantine_and_loads(tmp_path: Path, platform_dsn: str, s3_config, smtp_sink) -> None:
    smtp, mail_dir = smtp_sink
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    source = get_source("hg_bacquang_sqlite").model_copy(
        update={"datasets": {"dossiers": get_source("hg_bacquang_sqlite").datasets["dossiers"]}}
    )
    connection = _legacy(tmp_path / "bacquang.db")
    prepare_run(services, "run-1")
    first = _sync(services, source, connection, "run-1")
    assert (first["inserted"], first["quarantined"]) == (1, 1)

    send_run_reports(services, "run-1", [source])
    (message,) = [m for m in read_mail(mail_dir) if m["To"] == source.owners[0]] or [None]
    assert message is not None
    (attachment,) = [p for p in message.iter_attachments() if p.get_filename().endswith(".xlsx")]
    workbook = load_workbook(io.BytesIO(attachment.get_content()))
    sheet = workbook["cach_ly"]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, [c.value for c in r], strict=True)) for r in sheet.iter_rows(min_row=2)]
    bad = [r for r in rows if r["source_key"] == "BQ-2" and r["column"] == "received_date"]
    assert bad, rows
    # The owner writes the right date and returns the workbook to the landing prefix.
    sheet.cell(row=rows.index(bad[0]) + 2, column=header.index("corrected_value") + 1, value="29/02/2024")
    out = io.BytesIO()
    workbook.save(out)
    storage.put_bytes(s3_config, correction_prefix(source.id) + "bacquang-sua-loi.xlsx", out.getvalue())

    prepare_run(services, "run-2")
    second = _sync(services, source, connection, "run-2")
    with psycopg.connect(platform_dsn) as conn:
        loaded = conn.execute("SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-2'").fetchone()
        open_rows = conn.execute(
            "SELECT count(*) FROM ops.quarantine WHERE source_key = 'BQ-2' AND status = 'open'"
        ).fetchone()[0]
        resolved = conn.execute(
            "SELECT resolved_batch_id FROM ops.quarantine WHERE source_key = 'BQ-2' AND column_name = 'received_date'"
        ).fetchone()[0]
        recon = conn.execute(
            "SELECT extracted, loaded, quarantined, merged_duplicates FROM ops.reconciliation WHERE run_id = 'run-2'"
        ).fetchone()
    assert loaded == ("2024-02-29",)
    assert open_rows == 0 and resolved.startswith("run-2|")
    # run-2 re-reads the boundary row BQ-2 from the legacy system (still wrong there) and the corrected
    # record from the returned file: the corrected one wins, the stale copy is merged into it.
    assert recon[0] == recon[1] + recon[2] + recon[3]
    assert second["quarantined"] == 0

    # The same file is taken once: a third run applies nothing again.
    prepare_run(services, "run-3")
    third = _sync(services, source, connection, "run-3")
    assert third["extracted"] == 1  # only the legacy boundary row
    with psycopg.connect(platform_dsn) as conn:
        still = conn.execute("SELECT received_date::text FROM core.dossiers WHERE dossier_code = 'BQ-2'").fetchone()
        reopened = conn.execute("SELECT count(*) FROM ops.quarantine WHERE status = 'open'").fetchone()[0]
    assert still == ("2024-02-29",) and reopened == 0
