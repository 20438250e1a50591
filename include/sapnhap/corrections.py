"""Quarantined records come back: owners' corrections (the fix loop) and the data team's decisions.

An owner fills ``corrected_value`` in the XLSX attached to their report (or a CSV with the same
columns) and drops it in the bucket under ``landing/corrections/<source_id>/``. The next run
takes each new file once (tracked by sha256 like export files), applies the corrections to the
quarantined records, and sends the corrected records through the same transform, validation,
backup and load as the legacy rows. A record that now passes loads, and its quarantine rows
are resolved in the load's transaction; one that still fails stays in quarantine with the new
reason.

The same path brings back records of split communes that waited in the review queue: once the
data team records a decision for one, the next run takes its quarantined row again and the
transform maps it with ``mapping_method = 'decision'``; no re-extract from the legacy system
is needed.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from sapnhap import storage
from sapnhap.extract import SOURCE_FILE_COLUMN, used_columns
from sapnhap.ops import CORRECTION, record_quarantined_files, resolve_replaced_files
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.verify import CARRIED_HASH_COLUMN

log = logging.getLogger(__name__)

CORRECTIONS_PREFIX = "landing/corrections/"


class CorrectionFileError(ValueError):
    """A returned correction file cannot be read; the message names the file and the problem."""

    def __init__(self, message: str, *, reason_vi: str = "") -> None:
        super().__init__(message)
        self.reason_vi = reason_vi or message


def correction_prefix(source_id: str) -> str:
    return f"{CORRECTIONS_PREFIX}{source_id}/"


_FIX_VI = (
    "Dùng tệp Excel đính kèm thư báo cáo (trang cach_ly), chỉ điền cột corrected_value, "
    "lưu dạng .xlsx và gửi lại."
)


def _read_rows(key: str, data: bytes) -> pd.DataFrame:
    """The corrections of one returned file; :class:`CorrectionFileError` (``reason_vi``, never content) if unreadable."""
    from sapnhap.reports.attachment import read_quarantine_workbook

    try:
        if key.lower().endswith(".xlsx"):
            frame = pd.DataFrame(read_quarantine_workbook(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, encoding="utf-8-sig", keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable upload becomes one clear message
        # The error's type only: reader messages may quote cells (personal data).
        raise CorrectionFileError(
            f"{key}: cannot read the correction file ({type(exc).__name__})",
            reason_vi=f"Tệp sửa lỗi không đọc được ({type(exc).__name__}): tệp hỏng, sai định dạng hoặc thiếu trang tính.",
        ) from None
    needed = {"quarantine_id", "corrected_value"}
    if not needed <= set(frame.columns):
        missing = sorted(needed - set(frame.columns))
        raise CorrectionFileError(
            f"{key}: columns {missing} are missing", reason_vi=f"Tệp sửa lỗi thiếu cột: {', '.join(missing)}."
        )
    frame = frame[frame["corrected_value"].notna() & (frame["corrected_value"].astype(str).str.strip() != "")]
    return frame.assign(
        quarantine_id=pd.to_numeric(frame["quarantine_id"], errors="coerce"),
        corrected_value=frame["corrected_value"].astype(str).str.strip(),
    )


def pending_files(services: Services, source: Source, dataset: str, seen_sha256: set[str]) -> list[dict]:
    """Correction files of this source not yet taken for this dataset (key, sha256, bytes)."""
    out = []
    for key in sorted(storage.list_keys(services.s3, correction_prefix(source.id))):
        if not key.lower().endswith((".xlsx", ".csv")):
            continue
        data = storage.get_bytes(services.s3, key)
        sha = storage.sha256_bytes(data)
        if sha not in seen_sha256:
            out.append({"key": key, "sha256": sha, "data": data})
    return out


def legacy_rows(source: Source, dataset: str, records: dict[str, dict]) -> pd.DataFrame:
    """Canonical records (``source_key -> payload``) shaped back into the source's legacy columns.

    So the usual transform and validation judge them exactly like freshly extracted rows.
    """
    mapping = source.datasets[dataset]
    columns = sorted(used_columns(mapping) | {SOURCE_FILE_COLUMN, CARRIED_HASH_COLUMN})
    legacy = []
    for source_key, record in records.items():
        row = {legacy_col: record.get(canonical) for canonical, legacy_col in mapping.columns.items()}
        row.update(dict(zip(mapping.primary_key, source_key.split("|"), strict=False)))
        row[SOURCE_FILE_COLUMN] = "requeued"
        row[CARRIED_HASH_COLUMN] = record.get("legacy_row_hash")  # the legacy row it came from (sapnhap.verify)
        legacy.append(row)
    frame = pd.DataFrame(legacy).reindex(columns=columns)
    return frame.astype(object).where(frame.notna(), None).map(lambda v: None if v is None else str(v))


def _payload(value: object) -> dict:
    return dict(value if isinstance(value, dict) else json.loads(str(value)))


def readable_files(files: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split returned files into (readable, with ``rows``) and (unreadable, as quarantined-file rows)."""
    readable, unreadable = [], []
    for f in files:
        try:
            readable.append({**f, "rows": _read_rows(f["key"], f["data"])})
        except CorrectionFileError as exc:
            unreadable.append({"file_name": f["key"], "sha256": f["sha256"], "reason_vi": exc.reason_vi, "fix_vi": _FIX_VI})
    return readable, unreadable


def corrected_records(services: Services, source: Source, dataset: str, files: list[dict]) -> dict[str, dict]:
    """Quarantined records of ``dataset`` with the owners' corrections applied (``source_key -> record``).

    ``files`` are readable ones (see :func:`readable_files`), or raw ones read here.
    """
    frames = [f["rows"] if "rows" in f else _read_rows(f["key"], f["data"]) for f in files]
    corrections = pd.concat(frames, ignore_index=True) if frames else None
    if corrections is None or corrections.empty:
        return {}
    mapping = source.datasets[dataset]
    ids = [int(i) for i in corrections["quarantine_id"].dropna().unique()]
    with psycopg.connect(services.platform_dsn) as conn:
        rows = conn.execute(
            """SELECT quarantine_id, source_key, column_name, payload FROM ops.quarantine
               WHERE quarantine_id = ANY(%s) AND source_id = %s AND dataset = %s AND status = 'open'""",
            (ids, source.id, dataset),
        ).fetchall()
    known = pd.DataFrame(rows, columns=["quarantine_id", "source_key", "column_name", "payload"])
    merged = corrections[["quarantine_id", "corrected_value"]].merge(known, on="quarantine_id", how="inner")
    records: dict[str, dict] = {}
    for source_key, column, payload, value in zip(
        merged["source_key"], merged["column_name"], merged["payload"], merged["corrected_value"], strict=True
    ):
        record = records.setdefault(source_key, _payload(payload))
        if column in mapping.columns:
            record[column] = value
            record.pop(f"{column}__raw", None)
    return records


def decided_records(services: Services, source: Source, dataset: str) -> dict[str, dict]:
    """Open quarantined records whose split commune got a decision since they were last seen."""
    from sapnhap.reference.platform import DEFAULT_SCHEMA

    with psycopg.connect(services.platform_dsn) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"{DEFAULT_SCHEMA}.mapping_decisions",)).fetchone()[0]
        if exists is None:
            return {}
        rows = conn.execute(
            f"""SELECT DISTINCT ON (q.source_key) q.source_key, q.payload
                FROM ops.quarantine q
                JOIN {DEFAULT_SCHEMA}.mapping_decisions d ON d.record_key = q.source_id || ':' || q.source_key
                WHERE q.status = 'open' AND q.source_id = %s AND q.dataset = %s AND d.decided_at > q.last_seen
                ORDER BY q.source_key, q.last_seen DESC""",
            (source.id, dataset),
        ).fetchall()
    return {key: _payload(payload) for key, payload in rows}


def append_requeued(
    services: Services, source: Source, dataset: str, raw_path: Path, seen_sha256: set[str], *, batch_id: str = ""
) -> tuple[int, list[dict]]:
    """Append corrected and decided records to an extract's Parquet; return (rows appended, files consumed).

    A returned file that cannot be read is quarantined (``ops.quarantined_files``, under
    ``batch_id``) and not consumed: the source syncs, and a fixed upload is read as a new file.
    """
    files, unreadable = readable_files(pending_files(services, source, dataset, seen_sha256))
    if unreadable:
        log.warning("%s/%s: %d returned correction file(s) quarantined: %s", source.id, dataset, len(unreadable),
                    [f["file_name"] for f in unreadable])
    if files or unreadable:
        with psycopg.connect(services.platform_dsn) as conn:
            resolve_replaced_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id or "-",
                                   kind=CORRECTION, readable_names=[f["key"] for f in files])
            record_quarantined_files(conn, source_id=source.id, dataset=dataset, batch_id=batch_id or "-",
                                     kind=CORRECTION, files=unreadable)
    records = decided_records(services, source, dataset)
    records.update(corrected_records(services, source, dataset, files))  # a correction carries the decision too
    consumed = [{"file_name": f["key"], "sha256": f["sha256"], "rows": str(len(records))} for f in files]
    if not records:
        return 0, consumed
    requeued = legacy_rows(source, dataset, records)
    table = pq.read_table(raw_path)
    names = list(dict.fromkeys([*table.column_names, *requeued.columns]))
    extra = pa.Table.from_pandas(requeued.reindex(columns=names), preserve_index=False).cast(
        pa.schema([(n, pa.string()) for n in names])
    )
    base = table
    for n in names:
        if n not in base.column_names:
            base = base.append_column(n, pa.nulls(base.num_rows, pa.string()))
    pq.write_table(pa.concat_tables([base.select(names), extra]), raw_path, compression="zstd")
    log.info("%s/%s: %d quarantined records requeued (%d returned files)", source.id, dataset, len(records), len(files))
    return len(records), consumed
