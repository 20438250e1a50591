"""Load: one transaction per batch, from a verified backup into the platform.

Bulk ``COPY`` into a temporary staging table, then one merge into the core table. Identical
rows change nothing (a rerun is a no-op); changed rows update the core row and the trigger
keeps the previous version in ``history``. A record is ``(source_id, source_key)``: rows whose
natural key another record already holds (another source's, or another legacy row of the same
system) are merged duplicates: listed in ``ops.merged_duplicates``, and the newer record wins.
The incremental cursor, the consumed files, the quarantine and the reconciliation row are
written in the same transaction (:mod:`sapnhap.sync.load`; their SQL is in :mod:`sapnhap.ops`),
so a crash leaves nothing half-loaded and nothing skipped.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql

from sapnhap.datasets import Dataset, get_dataset
from sapnhap.ops import record_refused
from sapnhap.platform import LINEAGE_DDL, VERIFY_ONLY_COLUMNS

log = logging.getLogger(__name__)

# Rows per CSV buffer handed to COPY: ~7 MB of text, whatever the batch's chunk size.
COPY_CHUNK = 25_000


class ReconciliationError(RuntimeError):
    """Extracted rows are not all accounted for; the batch is rolled back."""


@dataclass
class LoadCounts:
    """How a batch ended up: every extracted row is exactly one of these."""

    extracted: int
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_in_batch: int = 0
    # Rows meeting another record's natural key in core (another source's, or another legacy row
    # of the same system): listed in ops.merged_duplicates whichever of the two is kept.
    merged_cross_source: int = 0
    quarantined: int = 0
    blocked: int = 0

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated + self.unchanged

    @property
    def merged(self) -> int:
        return self.merged_in_batch + self.merged_cross_source

    def reconciles(self) -> bool:
        return self.extracted == self.loaded + self.quarantined + self.merged + self.blocked


def target_columns(ds: Dataset) -> list[str]:
    """Columns written to core tables: canonical columns then lineage (without defaults)."""
    return ds.column_names + [n for n, _ in LINEAGE_DDL if n != "valid_from" and n not in VERIFY_ONLY_COLUMNS]


class LoadRefusedError(RuntimeError):
    """The platform refuses so many rows of a batch that the cause is not a row; nothing loaded."""


# How many rows of one batch (at least; or 1% of it) may be refused one by one before the refusal
# is taken for a systematic fault (a column type changed on the platform): bisection then would be
# slow and wrong.
MAX_REFUSED = 100

_REFUSED_REASONS_VI = {
    "22021": "Giá trị chứa ký tự không hợp lệ (ký tự NUL hoặc ký tự điều khiển) nên hệ thống mới không lưu được.",
    "22P05": "Giá trị chứa ký tự không chuyển được sang bảng mã UTF-8 của hệ thống mới.",
    "22001": "Giá trị dài hơn độ dài cho phép của cột trong hệ thống mới.",
    "22003": "Giá trị số vượt quá phạm vi cho phép của cột trong hệ thống mới.",
    "22007": "Giá trị ngày giờ không đúng định dạng của hệ thống mới.",
    "22008": "Giá trị ngày giờ nằm ngoài phạm vi cho phép của hệ thống mới.",
    "22P02": "Giá trị không đúng kiểu dữ liệu của cột trong hệ thống mới.",
    "23502": "Thiếu giá trị bắt buộc nên hệ thống mới không lưu được bản ghi.",
}


def _copy_rows(cur: psycopg.Cursor, stmt: sql.Composable, frame: pd.DataFrame, columns: list[str]) -> None:
    with cur.copy(stmt) as copy:
        for start in range(0, len(frame), COPY_CHUNK):
            copy.write(csv_for_copy(frame.iloc[start : start + COPY_CHUNK], columns))


def csv_for_copy(frame: pd.DataFrame, columns: list[str]) -> memoryview:
    """The rows as CSV for ``COPY ... (FORMAT csv)``, written by Arrow's C++ writer (issue 12).

    Every value is quoted and a missing value is an unquoted empty field, so NULL and the empty
    string stay apart (and a text that reads ``\\N`` is text). Timestamps go as the platform has
    always received them: wall-clock time to the second (floored), no zone. Arrow writes it several
    times faster than ``DataFrame.to_csv`` and without a Python string per value. When a column
    holds Python objects Arrow cannot type as one type, the object columns' values go as text
    (:func:`_as_csv_text`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    part = frame[columns]
    try:
        table = pa.Table.from_pandas(part, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        table = pa.Table.from_pandas(
            part.apply(lambda col: col.map(_as_csv_text, na_action="ignore") if col.dtype == object else col),
            preserve_index=False,
        )
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            values = table.column(i)
            if field.type.tz is not None:
                values = pc.local_timestamp(values)
            values = pc.cast(pc.floor_temporal(values, unit="second"), pa.timestamp("s"))
            table = table.set_column(i, field.name, values)
    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return memoryview(out.getvalue())  # Arrow's buffer, not a copy of it


def _as_csv_text(value: object) -> str:
    """A value of a column Arrow cannot type as one type, as text: timestamps to the second, else ``str()``."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value if isinstance(value, str) else str(value)


def _refused_column(exc: psycopg.Error, row: pd.Series, columns: list[str]) -> str | None:
    """The column PostgreSQL names for a refused row (never its value), else the one holding a NUL."""
    if exc.diag.column_name:
        return exc.diag.column_name
    # COPY's context reads 'COPY t, line 1, column c: "<value>"': only the name is taken from it.
    match = re.search(r", column ([^:,]+):", exc.diag.context or "")
    if match and match.group(1) in columns:
        return match.group(1)
    for col in columns:
        value = row[col]
        if isinstance(value, str) and "\x00" in value:
            return col
    return None


def _copy_frame(cur: psycopg.Cursor, table: str, frame: pd.DataFrame, columns: list[str], *,
                limit: int | None = None, refused_before: int = 0) -> pd.DataFrame:
    """COPY a DataFrame through CSV in chunks (no per-row Python); return the rows PostgreSQL refused.

    The COPY runs in a savepoint. When PostgreSQL refuses a value (a NUL, a number or date out
    of range, a value too long), the batch is split in halves until each refused row stands
    alone; every other row is copied. The refused rows come back with ``_refused_column``,
    ``_refused_sqlstate`` and ``_refused_reason_vi`` (no value is ever put in a message).
    """
    stmt = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    refused: list[tuple[object, str | None, str]] = []
    limit = max(MAX_REFUSED, len(frame) // 100) if limit is None else limit
    pending = [frame] if len(frame) else []
    while pending:
        part = pending.pop()
        try:
            with cur.connection.transaction():
                _copy_rows(cur, stmt, part, columns)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            if len(part) > 1:
                mid = len(part) // 2
                pending += [part.iloc[mid:], part.iloc[:mid]]
                continue
            refused.append((part.index[0], _refused_column(exc, part.iloc[0], columns), exc.sqlstate or ""))
            if refused_before + len(refused) > limit:
                raise LoadRefusedError(
                    f"{table}: PostgreSQL refused more than {limit} rows ({exc.sqlstate}, column "
                    f"{refused[-1][1]}); a column type or constraint of the platform does not fit the data"
                ) from None
    out = frame.loc[[r[0] for r in refused]].copy()
    out["_refused_column"] = [r[1] for r in refused]
    out["_refused_sqlstate"] = [r[2] for r in refused]
    out["_refused_reason_vi"] = [
        _REFUSED_REASONS_VI.get(r[2], f"Hệ thống mới từ chối lưu bản ghi (mã lỗi {r[2]}).") for r in refused
    ]
    return out


def _prepare(frame: pd.DataFrame, ds: Dataset, batch_id: str) -> pd.DataFrame:
    out = frame.copy()
    out["batch_id"] = batch_id
    for col in target_columns(ds):
        if col not in out:
            out[col] = None
    out["flag_old_code_after_merger"] = out["flag_old_code_after_merger"].fillna(False).astype(bool)
    for col in ds.columns:
        if col.type == "int":
            out[col.name] = out[col.name].astype("Int64")
    return out


def merge_batch(
    conn: psycopg.Connection,
    *,
    dataset: str,
    batch_id: str,
    valid: pd.DataFrame | Iterable[pd.DataFrame],
    target: sql.Composable | None = None,
    record_merges: bool = True,
    rows: int | None = None,
) -> LoadCounts:
    """Merge valid rows into ``core.<dataset>`` inside the caller's transaction; return the counts.

    ``valid`` is one frame, or the batch's chunks (each staged as it comes, so no more than a chunk
    of rows is held; ``rows``, their total, sets how many refusals are tolerated). The merge itself
    runs once, set-based, on the whole staged batch.
    ``target`` (a table with the core table's columns and key) replaces ``core.<dataset>``, and
    ``record_merges=False`` leaves ``ops.merged_duplicates`` alone: restore replays backups so.
    """
    ds = get_dataset(dataset)
    chunks = iter([valid] if isinstance(valid, pd.DataFrame) else valid)
    first = next((c for c in chunks if len(c)), None)
    if first is None:
        # Nothing changed in the legacy system: no staging table, no statement (issue 12).
        return LoadCounts(extracted=0)
    cols = target_columns(ds)
    key = list(ds.natural_key)
    counts = LoadCounts(extracted=0)
    with conn.cursor() as cur:
        # Several batches may merge in one transaction (restore replays them so).
        cur.execute("DROP TABLE IF EXISTS pg_temp.stage_rows")
        cur.execute(
            sql.SQL("CREATE TEMP TABLE stage_rows (LIKE core.{} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                sql.Identifier(ds.name)
            )
        )
        for chunk in itertools.chain([first], chunks):
            if not len(chunk):
                continue
            frame = _prepare(chunk, ds, batch_id)
            counts.extracted += len(frame)
            limit = max(MAX_REFUSED, (rows if rows is not None else len(frame)) // 100)
            refused = _copy_frame(cur, "stage_rows", frame, cols, limit=limit, refused_before=counts.quarantined)
            del frame
            if len(refused) and not record_merges:
                # A replay (restore) of rows the platform once took: a refusal is the schema's fault, not a row's.
                raise LoadRefusedError(f"{batch_id}: {len(refused)} row(s) refused on replay; columns "
                                       f"{sorted(set(refused['_refused_column'].dropna()))}")
            counts.quarantined += record_refused(conn, dataset=ds.name, batch_id=batch_id, refused=refused)
        key_sql = sql.SQL(", ").join(sql.Identifier(k) for k in key)
        key_join = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key)
        key_text = sql.SQL(" || '|' || ").join(sql.SQL("s.{}::text").format(sql.Identifier(k)) for k in key)
        table = target if target is not None else sql.Identifier("core", ds.name)
        # A record is (source_id, source_key): two legacy rows of one system sharing a natural key
        # are two records, and the one that loses the key must be listed, never silently replaced.
        same_record = sql.SQL("(t.source_id = s.source_id AND t.source_key = s.source_key)")
        incoming_wins = sql.SQL("(s.updated_at > t.updated_at OR (t.updated_at IS NULL AND s.updated_at IS NOT NULL))")
        # Rows whose key another record already holds: merged duplicates (R5), listed with both sides.
        if record_merges:
            cur.execute(
                sql.SQL(
                    """INSERT INTO ops.merged_duplicates
                       (dataset, natural_key, source_id, source_key, kept_source_id, kept_source_key, reason, batch_id,
                        legacy_row_hash)
                       SELECT %s, {key_text},
                              CASE WHEN {wins} THEN t.source_id ELSE s.source_id END,
                              CASE WHEN {wins} THEN t.source_key ELSE s.source_key END,
                              CASE WHEN {wins} THEN s.source_id ELSE t.source_id END,
                              CASE WHEN {wins} THEN s.source_key ELSE t.source_key END,
                              CASE WHEN t.source_id = s.source_id THEN 'duplicate_in_source'
                                   ELSE 'duplicate_across_sources' END,
                              %s,
                              CASE WHEN {wins} THEN t.legacy_row_hash ELSE s.legacy_row_hash END
                       FROM stage_rows s JOIN {table} t ON {key_join}
                       WHERE NOT {same}
                       ON CONFLICT DO NOTHING"""
                ).format(key_text=key_text, table=table, key_join=key_join, wins=incoming_wins, same=same_record),
                (ds.name, batch_id),
            )
        # Classify before merging: each staged row is new, changed, identical, or meets another record's key.
        cur.execute(
            sql.SQL(
                """SELECT count(*) FILTER (WHERE t.source_id IS NULL),
                          count(*) FILTER (WHERE {same} AND t.record_hash <> s.record_hash),
                          count(*) FILTER (WHERE {same} AND t.record_hash = s.record_hash),
                          count(*) FILTER (WHERE t.source_id IS NOT NULL AND NOT {same})
                   FROM stage_rows s LEFT JOIN {table} t ON {key_join}"""
            ).format(table=table, key_join=key_join, same=same_record)
        )
        counts.inserted, counts.updated, counts.unchanged, counts.merged_cross_source = cur.fetchone()
        non_key = [c for c in cols if c not in key]
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in [*non_key, "valid_from"]
        )
        # The same record: update when its content changed. Another record (of any source): replace
        # it only when the incoming one is newer, exactly as the merge rows above say.
        cur.execute(
            sql.SQL(
                """INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM stage_rows
                   ON CONFLICT ({key}) DO UPDATE SET {assignments}
                   WHERE CASE WHEN t.source_id = EXCLUDED.source_id AND t.source_key = EXCLUDED.source_key
                              -- the same legacy record: also a change the canonical row does not show (verify)
                              THEN t.record_hash IS DISTINCT FROM EXCLUDED.record_hash
                                   OR t.legacy_row_hash IS DISTINCT FROM EXCLUDED.legacy_row_hash
                              ELSE EXCLUDED.updated_at > t.updated_at
                                   OR (t.updated_at IS NULL AND EXCLUDED.updated_at IS NOT NULL) END
"""
            ).format(
                target=table,
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                key=key_sql,
                assignments=assignments,
            )
        )
        # A record whose natural key changed in its legacy system (a corrected citizen id) now lives
        # at its new key: its row at the old key is no longer current (the trigger keeps it in
        # history). Kept when other records were merged into it there: they would lose their holder.
        cur.execute(
            sql.SQL(
                """DELETE FROM {table} t USING stage_rows s
                   WHERE t.source_id = s.source_id AND t.source_key = s.source_key AND NOT ({key_join})
                     AND NOT EXISTS (SELECT 1 FROM stage_rows s2 WHERE s2.source_id = t.source_id
                                       AND s2.source_key = t.source_key AND {same_key})
                     AND NOT EXISTS (SELECT 1 FROM ops.merged_duplicates m
                                     WHERE m.dataset = %s AND m.kept_source_id = t.source_id
                                       AND m.kept_source_key = t.source_key AND m.natural_key = {old_key})"""
            ).format(
                table=table,
                key_join=key_join,
                same_key=sql.SQL(" AND ").join(sql.SQL("t.{0} = s2.{0}").format(sql.Identifier(k)) for k in key),
                old_key=sql.SQL(" || '|' || ").join(sql.SQL("t.{}::text").format(sql.Identifier(k)) for k in key),
            ),
            (ds.name,),
        )
        if cur.rowcount:
            log.info("%s %s: %d records moved to a new natural key; their rows at the old key went to history",
                     ds.name, batch_id, cur.rowcount)
    return counts


