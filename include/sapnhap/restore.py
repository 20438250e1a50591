"""Restore: rebuild a dataset of the platform from the backups alone, and the weekly drill.

Every batch the nightly sync loaded left ``valid.parquet`` and a ``manifest.json`` (with the
sha256 of every object) under ``backups/<source>/<dataset>/<date>/<run>/``. A restore

1. lists the manifests of the dataset (of one source, or of all), keeps the batches that were
   loaded (``ops.batches`` says so when the platform still has it; otherwise every batch whose
   quality decision was not ``block``), orders them as they committed, and cuts after
   ``as_of_run`` if given;
2. downloads and verifies every object of every manifest against its sha256 and refuses, with
   the key and both checksums, before anything is written;
3. replays the valid rows in order with :func:`sapnhap.load.merge_batch` (same upsert rules as
   the nightly load, so cross-source duplicates resolve the same way) into a work table;
4. writes the result: into ``<target_schema>.<dataset>`` (a scratch copy), or for ``core`` by
   syncing the core table to it in the same transaction (rows that differ are updated or
   deleted, so the history trigger records what the restore changed, and nothing else).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import psycopg
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from sapnhap import storage
from sapnhap.datasets import get_dataset
from sapnhap.load import merge_batch, target_columns
from sapnhap.services import Services

log = logging.getLogger(__name__)

DRILL_SCHEMA = "restore_drill"
_PROTECTED_SCHEMAS = {"history", "ops", "registry", "public", "pg_catalog", "information_schema"}
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RestoreError(storage.BackupError):
    """A restore was refused: a checksum does not match, a backup is missing, or the request is invalid."""


@dataclass(frozen=True)
class BackupBatch:
    """One backed-up batch as a restore sees it."""

    batch_id: str
    run_id: str
    source_id: str
    manifest_key: str
    manifest: dict = field(repr=False)
    order: datetime  # commit time from ops.batches, else the manifest's creation time


@dataclass
class RestoreReport:
    """What a restore did and what it found."""

    dataset: str
    source_id: str | None
    as_of_run: str | None
    target_schema: str
    batches: list[str]
    verified_objects: int
    rows: int
    checksum: str
    platform_rows: int | None = None
    platform_checksum: str | None = None
    matches_platform: bool | None = None
    rows_by_source: dict[str, int] = field(default_factory=dict)
    platform_rows_by_source: dict[str, int] = field(default_factory=dict)
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _fingerprint_sql(table: sql.Composable, dataset: str, source_id: str | None) -> sql.Composed:
    """Count and order-independent checksum of a table's records (all columns but the load time)."""
    ds = get_dataset(dataset)
    cols = [c for c in target_columns(ds) if c != "valid_from"]
    row_text = sql.SQL("concat_ws('|', {})").format(
        sql.SQL(", ").join(sql.SQL("coalesce({}::text, '\\N')").format(sql.Identifier(c)) for c in cols)
    )
    where = sql.SQL("WHERE source_id = {}").format(sql.Literal(source_id)) if source_id else sql.SQL("")
    # 64 bits of md5 per row, summed as numeric: independent of row order, no overflow.
    return sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || substr(md5({row}), 1, 16))::bit(64)::bigint::numeric), 0)::text "
        "FROM {table} {where}"
    ).format(row=row_text, table=table, where=where)


def table_fingerprint(conn: psycopg.Connection, table: sql.Composable, dataset: str,
                      source_id: str | None = None) -> tuple[int, str]:
    """(rows, checksum) of a core-shaped table; equal fingerprints mean equal records."""
    count, checksum = conn.execute(_fingerprint_sql(table, dataset, source_id)).fetchone()
    return int(count), f"{int(count)}:{checksum}"


def _rows_by_source(conn: psycopg.Connection, table: sql.Composable) -> dict[str, int]:
    rows = conn.execute(sql.SQL("SELECT source_id, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(table)).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _manifest(services: Services, key: str) -> dict:
    """Download a manifest and check it against the sha256 written with it."""
    try:
        head = storage._client(services.s3).head_object(Bucket=services.s3.bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise RestoreError(f"restore refused: manifest {key} unreadable: {exc}") from exc
    expected = (head.get("Metadata") or {}).get("sha256")
    try:
        data = storage.get_bytes(services.s3, key, expected)
    except storage.BackupError as exc:
        raise RestoreError(f"restore refused: manifest {key} does not match its checksum: {exc}") from exc
    return json.loads(data.decode("utf-8"))


def _ops_batches(services: Services, batch_ids: list[str]) -> dict[str, tuple[str, datetime | None]]:
    """batch_id -> (status, committed_at) from the platform, when its ops tables still hold them."""
    try:
        with psycopg.connect(services.platform_dsn) as conn:
            rows = conn.execute(
                "SELECT batch_id, status, committed_at FROM ops.batches WHERE batch_id = ANY(%s)",
                (batch_ids,),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return {}
    return {r[0]: (r[1], r[2]) for r in rows}


def _manifest_time(manifest: dict, key: str) -> datetime:
    """When a batch was backed up: the manifest's own stamp, else the date folder of its key."""
    stamp = manifest.get("created_at")
    if stamp:
        return datetime.fromisoformat(stamp)
    return datetime.fromisoformat(key.split("/")[3]).replace(tzinfo=UTC)


def list_backups(services: Services, dataset: str, *, source_id: str | None = None,
                 as_of_run: str | None = None) -> list[BackupBatch]:
    """The loaded batches of ``dataset`` in the bucket, in commit order, up to ``as_of_run``."""
    get_dataset(dataset)
    prefix = f"backups/{source_id}/{dataset}/" if source_id else "backups/"
    keys = [
        k for k in storage.list_keys(services.s3, prefix)
        if k.endswith("/manifest.json") and k.split("/")[2] == dataset
    ]
    manifests = {k: _manifest(services, k) for k in keys}
    ops = _ops_batches(services, [m["batch_id"] for m in manifests.values()])
    batches = []
    for key, m in manifests.items():
        status, committed = ops.get(m["batch_id"], (None, None))
        if status is not None and status != "loaded":
            continue  # blocked, or backed up but its load failed and was retried in a later run
        if status is None and m.get("decision") == "block":
            continue
        order = committed or _manifest_time(m, key)
        batches.append(BackupBatch(m["batch_id"], m.get("run_id") or m["batch_id"].split("|")[0],
                                   m["source_id"], key, m, order))
    # A batch commits after its manifest is written and before the next run's: the two clocks
    # order batches alike. The batch id breaks ties deterministically.
    batches.sort(key=lambda b: (b.order, b.batch_id))
    if as_of_run is not None:
        positions = [i for i, b in enumerate(batches) if b.run_id == as_of_run]
        if not positions:
            raise RestoreError(f"no loaded batch of {dataset} in run {as_of_run!r} in the backups")
        batches = batches[: positions[-1] + 1]
    return batches


def verify_backups(services: Services, batches: list[BackupBatch]) -> int:
    """Check every object of every manifest against its sha256; raise :class:`RestoreError` on the first mismatch."""
    n = 0
    for b in batches:
        if not b.manifest.get("complete"):
            raise RestoreError(f"restore refused: {b.manifest_key} is not a complete backup")
        for name, obj in b.manifest["objects"].items():
            try:
                storage.get_bytes(services.s3, str(obj["key"]), str(obj["sha256"]))
            except storage.BackupError as exc:
                raise RestoreError(
                    f"restore refused: {name} of batch {b.batch_id} does not match manifest {b.manifest_key}: {exc}. "
                    "Nothing was written. Restore from an earlier run (--as-of-run) or recover the object."
                ) from exc
            n += 1
    return n


def _check_target(target_schema: str) -> None:
    if not _SCHEMA_RE.match(target_schema) or target_schema in _PROTECTED_SCHEMAS:
        raise RestoreError(f"target schema {target_schema!r} refused: use core or a scratch schema name")


def restore_dataset(services: Services, dataset: str, *, source_id: str | None = None, as_of_run: str | None = None,
                    target_schema: str = "core", compare: bool = False, drill: bool = False) -> RestoreReport:
    """Rebuild ``dataset`` (or one source's part of it) from the backups into ``target_schema``.

    Returns a :class:`RestoreReport` with the batches replayed and the (rows, checksum) of the
    result; with ``compare=True`` also those of ``core.<dataset>`` and whether they match.
    Raises :class:`RestoreError` before writing anything if a checksum does not match.
    """
    _check_target(target_schema)
    ds = get_dataset(dataset)
    batches = list_backups(services, dataset, source_id=source_id, as_of_run=as_of_run)
    if not batches:
        raise RestoreError(f"no backup of {dataset}{' from ' + source_id if source_id else ''} in bucket "
                           f"{services.s3.bucket}")
    verified = verify_backups(services, batches)
    core = sql.Identifier("core", ds.name)
    with psycopg.connect(services.platform_dsn) as conn, conn.transaction():
        # The nightly load of these sources waits (same advisory locks) until the restore commits.
        for sid in sorted({b.source_id for b in batches}):
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{sid}/{dataset}",))
        if target_schema == "core":
            work = sql.Identifier("pg_temp", "restore_rows")
            conn.execute(sql.SQL("CREATE TEMP TABLE restore_rows (LIKE {} INCLUDING DEFAULTS INCLUDING INDEXES) "
                                 "ON COMMIT DROP").format(core))
        else:
            work = sql.Identifier(target_schema, ds.name)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target_schema)))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(work))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING INDEXES)").format(work, core))
        if source_id:
            # The other sources' records stay as the platform holds them; this source's are replayed over them.
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE source_id <> %s").format(work, core), (source_id,))
        for b in batches:
            obj = b.manifest["objects"]["valid"]
            valid = pq.read_table(io.BytesIO(storage.get_bytes(services.s3, obj["key"], obj["sha256"]))).to_pandas()
            merge_batch(conn, dataset=dataset, batch_id=b.batch_id, valid=valid, target=work, record_merges=False)
        rows, checksum = table_fingerprint(conn, work, dataset)
        report = RestoreReport(dataset, source_id, as_of_run, target_schema, [b.batch_id for b in batches],
                               verified, rows, checksum, rows_by_source=_rows_by_source(conn, work))
        if target_schema == "core":
            _sync_core(conn, ds.name, work, list(ds.natural_key), target_columns(ds))
            report.message = "core synced to the restored rows"
            if as_of_run:
                report.message += ("; cursors were not moved back: the next nightly run only reads what changed "
                                   "after them")
        if compare or target_schema == "core":
            report.platform_rows, report.platform_checksum = table_fingerprint(conn, core, dataset)
            report.platform_rows_by_source = _rows_by_source(conn, core)
            report.matches_platform = report.platform_checksum == report.checksum
        conn.execute(
            """INSERT INTO ops.restores (dataset, source_id, as_of_run, target_schema, batches, rows, checksum,
                   matches_platform, drill, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (dataset, source_id, as_of_run, target_schema, len(batches), rows, checksum, report.matches_platform,
             drill, report.message or None),
        )
    log.info("restored %s%s: %d batches, %d rows, checksum %s, matches platform: %s", dataset,
             f"/{source_id}" if source_id else "", len(batches), rows, checksum, report.matches_platform)
    return report


def _sync_core(conn: psycopg.Connection, table: str, work: sql.Composable, key_cols: list[str],
               cols: list[str]) -> None:
    """Make ``core.<table>`` hold exactly the rows of ``work``, touching only rows that differ."""
    core = sql.Identifier("core", table)
    key = sql.SQL(", ").join(sql.Identifier(k) for k in key_cols)
    join = sql.SQL(" AND ").join(sql.SQL("w.{0} = t.{0}").format(sql.Identifier(k)) for k in key_cols)
    conn.execute(sql.SQL("DELETE FROM {core} t WHERE NOT EXISTS (SELECT 1 FROM {work} w WHERE {join})").format(
        core=core, work=work, join=join))
    non_key = [c for c in cols if c not in key_cols]
    differs = sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM EXCLUDED.{0}").format(sql.Identifier(c))
                                   for c in non_key)
    conn.execute(sql.SQL(
        """INSERT INTO {core} AS t ({cols}, valid_from) SELECT {cols}, valid_from FROM {work}
           ON CONFLICT ({key}) DO UPDATE SET {assign} WHERE {differs}"""
    ).format(
        core=core, work=work, key=key, differs=differs,
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        assign=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in [*non_key, "valid_from"]),
    ))


def drop_scratch(services: Services, schema: str) -> None:
    """Drop a scratch restore schema (it holds personal data: it does not outlive its purpose)."""
    _check_target(schema)
    if schema == "core":
        raise RestoreError("refusing to drop core")
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def backed_up_datasets(services: Services) -> list[str]:
    """Datasets with at least one manifest in the bucket."""
    return sorted({k.split("/")[2] for k in storage.list_keys(services.s3, "backups/") if k.endswith("/manifest.json")})


def restore_drill(services: Services, *, recipients: list[str], datasets: list[str] | None = None,
                  schema: str = DRILL_SCHEMA) -> dict:
    """The weekly restore drill: restore every backed-up dataset into a scratch schema, compare
    rows and checksum with the platform, email the result in Vietnamese, drop the scratch copy.

    Returns ``{"ok": bool, "reports": [...], "errors": {dataset: message}, "sent_to": [...]}``;
    a failed comparison or restore is reported by email, then raised as :class:`RestoreError`
    so the DAG run shows it.
    """
    reports: list[RestoreReport] = []
    errors: dict[str, str] = {}
    try:
        for dataset in datasets or backed_up_datasets(services):
            try:
                reports.append(restore_dataset(services, dataset, target_schema=schema, compare=True, drill=True))
            except (storage.BackupError, psycopg.Error) as exc:
                errors[dataset] = str(exc)
    finally:
        drop_scratch(services, schema)
    ok = not errors and bool(reports) and all(r.matches_platform for r in reports)
    if recipients:
        _send_drill_mail(services, recipients, reports, errors, ok)
    result = {"ok": ok, "reports": [r.as_dict() for r in reports], "errors": errors, "sent_to": recipients}
    if not ok:
        raise RestoreError(f"restore drill failed: {errors or [r.dataset for r in reports if not r.matches_platform]}"
                           f"{'' if reports or errors else 'no backups found'}")
    return result


def _send_drill_mail(services: Services, recipients: list[str], reports: list[RestoreReport],
                     errors: dict[str, str], ok: bool) -> None:
    from sapnhap.reports.mail import new_message
    from sapnhap.reports.send import send_messages

    lines = [
        "Kính gửi nhóm dữ liệu,",
        "",
        "Kết quả diễn tập khôi phục dữ liệu từ bản sao lưu (khôi phục vào lược đồ tạm, "
        "so sánh số bản ghi và mã kiểm tra với nền tảng):",
        "",
    ]
    for r in reports:
        state = "KHỚP" if r.matches_platform else "KHÔNG KHỚP"
        lines.append(f"- {get_dataset(r.dataset).title_vi} ({r.dataset}): {state}. "
                     f"Khôi phục {r.rows} bản ghi từ {len(r.batches)} lô, đã kiểm tra {r.verified_objects} tệp sao lưu; "
                     f"nền tảng có {r.platform_rows} bản ghi.")
        if not r.matches_platform:
            for sid in sorted(set(r.rows_by_source) | set(r.platform_rows_by_source)):
                lines.append(f"    nguồn {sid}: khôi phục {r.rows_by_source.get(sid, 0)}, "
                             f"nền tảng {r.platform_rows_by_source.get(sid, 0)}")
    for dataset, message in errors.items():
        lines.append(f"- {dataset}: KHÔNG KHÔI PHỤC ĐƯỢC. Lý do: {message}")
    if not reports and not errors:
        lines.append("- Không tìm thấy bản sao lưu nào.")
    lines += ["", "Kết luận: " + ("khôi phục được toàn bộ, dữ liệu trùng khớp." if ok
                                  else "CẦN XỬ LÝ: có bộ dữ liệu không khôi phục được hoặc không trùng khớp."),
              "", "Lược đồ tạm đã được xóa sau khi so sánh.", "", "Hệ thống đồng bộ sapnhap"]
    msgs = []
    for to in recipients:
        msg = new_message(f"[sapnhap] Diễn tập khôi phục dữ liệu: {'ĐẠT' if ok else 'KHÔNG ĐẠT'}",
                          services.smtp.from_addr, to)
        msg.set_content("\n".join(lines), charset="utf-8")
        msgs.append(msg)
    send_messages(services.smtp, msgs)


def drill_recipients(services: Services) -> list[str]:
    """Who gets the drill result: ``SAPNHAP_DRILL_RECIPIENTS`` (comma-separated), else the sender address."""
    text = os.environ.get("SAPNHAP_DRILL_RECIPIENTS", "")
    return [a.strip() for a in text.split(",") if a.strip()] or [services.smtp.from_addr]
