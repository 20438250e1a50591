"""A small SQLite legacy system shaped like the Bắc Quang source, and one sync of it by stages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sapnhap.services import Services
from sapnhap.sources import Source, get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

COLUMNS = ("file_no", "proc_code", "proc_name", "applicant", "id_number", "commune_code", "address",
           "recv_date", "due_date", "return_date", "status", "last_modified")


def bacquang_dossiers_source() -> Source:
    """The Bắc Quang source restricted to its dossiers."""
    source = get_source("hg_bacquang_sqlite")
    return source.model_copy(update={"datasets": {"dossiers": source.datasets["dossiers"]}})


def dossier(file_no: str, *, commune: str = "01000", address: str = "Thôn Khuổi Lác", recv: str = "03/03/2024",
            due: str = "10/03/2024", modified: str = "2024-03-03 08:00:00") -> dict:
    return {"file_no": file_no, "proc_code": "1.000", "proc_name": "Chứng thực bản sao", "applicant": "Trần Thị Bình",
            "id_number": "002301012345", "commune_code": commune, "address": address, "recv_date": recv,
            "due_date": due, "return_date": None, "status": "RECEIVED", "last_modified": modified}


def sqlite_legacy(path: Path, rows: list[dict]) -> str:
    """Create the legacy SQLite file with ``rows``; return its connection URI."""
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE dossiers ({', '.join(c + ' TEXT' for c in COLUMNS)}, PRIMARY KEY (file_no))")
        db.executemany(
            f"INSERT INTO dossiers VALUES ({', '.join('?' for _ in COLUMNS)})", [[r[c] for c in COLUMNS] for r in rows]
        )
    return f"sqlite://{path}"


def sync(services: Services, source: Source, connection: str, run_id: str, dataset: str = "dossiers") -> dict:
    """Extract, transform, validate, back up and load one dataset; return the load's counts."""
    batch = extract_stage(services, source, dataset, connection, run_id=run_id, run_date="2026-11-20")
    for stage in (transform_stage, validate_stage, backup_stage):
        batch = stage(services, source, batch)
    return load_stage(services, source, batch)
