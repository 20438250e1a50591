"""Restore: rebuild a dataset of the platform from the backups alone, the weekly drill, retention.

Every attempt at a batch left ``valid.parquet`` and a signed ``manifest.json`` (with the sha256
of every object) under ``backups/<source>/<dataset>/<date>/<run>/<attempt>/``, and every load
that committed wrote its manifest key to ``ops.loaded_backups``. A restore

1. takes the backups the platform says were loaded (``ops.loaded_backups``, and ``ops.batches``
   for loads older than it), per source and dataset, in commit order, up to ``as_of_run``; if the
   platform lost its ops records, every signed complete backup in the bucket whose decision was
   not ``block``;
2. refuses, before anything is written, unless every one of them has its manifest in the
   bucket, matching its checksum and its HMAC signature, and every object of every manifest
   matches its sha256: the refusal lists every missing or damaged backup;
3. replays the valid rows in order with :func:`sapnhap.load.merge_batch` (same upsert rules as
   the nightly load, so cross-source duplicates resolve the same way) into a work table;
4. computes the plan (rows it would insert, update and delete in ``core``) and writes the
   result: into ``<target_schema>.<dataset>`` (a scratch copy), or for ``core``, only when
   confirmed, by syncing the core table to it in the same transaction (rows that differ are
   updated or deleted, so the history trigger records what the restore changed, and nothing else).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from sapnhap import storage
from sapnhap.datasets import get_dataset
from sapnhap.load import merge_batch, target_columns
from sapnhap.platform import VERIFY_ONLY_COLUMNS
from sapnhap.services import Services

log = logging.getLogger(__name__)

DRILL_SCHEMA = "restore_drill"
_PROTECTED_SCHEMAS = {"history", "ops", "registry", "public", "pg_catalog", "information_schema"}
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RestoreError(storage.BackupError):
    """A restore was refused: a checksum does not match, a backup is missing, or the request is invalid.

    ``missing`` lists the manifest keys (or batch ids, when no key was recorded) of loaded batches
    whose backup is not in the bucket; ``retryable`` says whether trying again can help (a lost
    connection) or not (a missing or damaged backup, a mismatch).
    """

    def __init__(self, message: str, *, missing: list[str] | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.retryable = retryable


def is_retryable(exc: BaseException) -> bool:
    """Whether running a restore or the drill again can succeed: yes for a lost connection to the
    bucket or the platform; no for a missing, damaged or unsigned backup or a checksum mismatch."""
    if isinstance(exc, RestoreError):
        return exc.retryable
    if isinstance(exc, storage.ObjectExistsError | storage.SignatureError):
        return False
    if isinstance(exc, storage.BackupError):
        return "checksum mismatch" not in str(exc)
    return isinstance(exc, psycopg.OperationalError)


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
    # What syncing core to the restored rows inserts, updates and deletes (total and per source).
    plan: dict = field(default_factory=dict)
    applied: bool = False
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def restored_columns(ds) -> list[str]:  # noqa: ANN001 - a Dataset
    """Columns a restore reproduces: what the load writes, and the deletion flags verification set
    (backed up apart from the batches, :func:`sapnhap.verify.back_up_deletion_flags`)."""
    return [*target_columns(ds), *VERIFY_ONLY_COLUMNS]


def _fingerprint_sql(table: sql.Composable, dataset: str, source_id: str | None) -> sql.Composed:
    """Count and order-independent checksum of a table's records (all columns but the load time)."""
    ds = get_dataset(dataset)
    cols = [c for c in restored_columns(ds) if c != "valid_from"]
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
    """Download a manifest, check it against the sha256 written with it and its signature.

    Raises :class:`RestoreError` (with ``missing``) when it is not in the bucket, :class:`RestoreError`
    when it is damaged or its signature does not hold, :class:`storage.BackupError` when the
    bucket cannot be reached.
    """
    try:
        head = storage._client(services.s3).head_object(Bucket=services.s3.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise RestoreError(f"manifest {key} is not in the bucket", missing=[key]) from exc
        raise RestoreError(f"manifest {key} unreadable: {exc}") from exc
    except BotoCoreError as exc:
        raise storage.BackupError(f"object storage: inspect {key} failed: {exc}") from exc
    expected = (head.get("Metadata") or {}).get("sha256")
    try:
        data = storage.get_bytes(services.s3, key, expected)
    except storage.BackupError as exc:
        if "checksum mismatch" not in str(exc):
            raise
        raise RestoreError(f"manifest {key} does not match its checksum: {exc}") from exc
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RestoreError(f"manifest {key} is not a manifest: {exc}") from exc
    try:
        storage.verify_manifest_signature(manifest, services.signing_key, name=f"manifest {key}")
    except storage.SignatureError as exc:
        raise RestoreError(str(exc)) from exc
    if not manifest.get("complete"):
        raise RestoreError(f"manifest {key} is not a complete backup")
    return manifest


@dataclass(frozen=True)
class LoadedBatch:
    """A backup the platform says a committed load came from."""

    manifest_key: str | None
    batch_id: str
    run_id: str
    source_id: str
    order: datetime


def _loaded_batches(services: Services, dataset: str, source_id: str | None) -> list[LoadedBatch] | None:
    """Backups of ``dataset`` whose load committed, in commit order; None if the platform has no ops records."""
    try:
        with psycopg.connect(services.platform_dsn) as conn:
            if not conn.execute("SELECT EXISTS (SELECT 1 FROM ops.batches)").fetchone()[0]:
                return None
            # Loads committed before ops.loaded_backups existed are known from ops.batches alone.
            batches = sql.SQL(
                """SELECT b.manifest_key, b.batch_id, b.run_id, b.source_id, coalesce(b.committed_at, b.created_at)
                     FROM ops.batches b
                    WHERE b.dataset = %(d)s AND b.status = 'loaded' AND (%(s)s::text IS NULL OR b.source_id = %(s)s)""")
            if conn.execute("SELECT to_regclass('ops.loaded_backups') IS NOT NULL").fetchone()[0]:
                query = sql.SQL(
                    """SELECT manifest_key, batch_id, run_id, source_id, loaded_at FROM ops.loaded_backups
                        WHERE dataset = %(d)s AND status = 'loaded' AND (%(s)s::text IS NULL OR source_id = %(s)s)
                       UNION ALL {batches}
                          AND NOT EXISTS (SELECT 1 FROM ops.loaded_backups l WHERE l.batch_id = b.batch_id)"""
                ).format(batches=batches)
            else:
                query = batches
            rows = conn.execute(query, {"d": dataset, "s": source_id}).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    loaded = [LoadedBatch(*r) for r in rows]
    loaded.sort(key=lambda b: (b.order, b.batch_id, b.manifest_key or ""))
    return loaded


def _manifest_time(manifest: dict, key: str) -> datetime:
    """When a batch was backed up: the manifest's own stamp, else the date folder of its key."""
    stamp = manifest.get("created_at")
    if stamp:
        return datetime.fromisoformat(stamp)
    return datetime.fromisoformat(key.split("/")[3]).replace(tzinfo=UTC)


def _cut(items: list, run_of, as_of_run: str | None, dataset: str) -> list:
    if as_of_run is None:
        return items
    positions = [i for i, item in enumerate(items) if run_of(item) == as_of_run]
    if not positions:
        raise RestoreError(f"no loaded batch of {dataset} in run {as_of_run!r} in the backups")
    return items[: positions[-1] + 1]


def _refusal(dataset: str, total: int, problems: list[str], missing: list[str]) -> RestoreError:
    lines = "\n".join(f"  - {p}" for p in problems)
    return RestoreError(
        f"restore refused: {len(problems)} of {total} loaded batches of {dataset} have no verified backup; "
        f"nothing was written:\n{lines}\nRecover these objects, or restore to an earlier run (--as-of-run).",
        missing=missing,
    )


def list_backups(services: Services, dataset: str, *, source_id: str | None = None,
                 as_of_run: str | None = None) -> list[BackupBatch]:
    """The backups a restore of ``dataset`` replays, in commit order, up to ``as_of_run``, each
    manifest verified (checksum, signature, completeness).

    Raises :class:`RestoreError` listing every loaded batch whose manifest is missing or does
    not verify: a restore never rebuilds from part of what the platform loaded.
    """
    get_dataset(dataset)
    if not services.signing_key:
        raise RestoreError("restore refused: no backup signing key is configured (Airflow connection "
                           "sapnhap_backup_signing or SAPNHAP_BACKUP_SIGNING_KEY): the backups cannot be verified")
    loaded = _loaded_batches(services, dataset, source_id)
    if loaded is None:
        return _bucket_backups(services, dataset, source_id=source_id, as_of_run=as_of_run)
    loaded = _cut(loaded, lambda b: b.run_id, as_of_run, dataset)
    batches: list[BackupBatch] = []
    problems: list[str] = []
    missing: list[str] = []
    for b in loaded:
        if not b.manifest_key:
            problems.append(f"batch {b.batch_id}: loaded, but no manifest key was recorded")
            missing.append(b.batch_id)
            continue
        try:
            m = _manifest(services, b.manifest_key)
        except RestoreError as exc:
            problems.append(f"batch {b.batch_id}: {exc}")
            missing += exc.missing
            continue
        if (m.get("batch_id"), m.get("dataset"), m.get("source_id")) != (b.batch_id, dataset, b.source_id):
            problems.append(f"batch {b.batch_id}: manifest {b.manifest_key} describes another batch "
                            f"({m.get('batch_id')})")
            continue
        batches.append(BackupBatch(b.batch_id, b.run_id, b.source_id, b.manifest_key, m, b.order))
    if problems:
        raise _refusal(dataset, len(loaded), problems, missing)
    return batches


def _bucket_backups(services: Services, dataset: str, *, source_id: str | None,
                    as_of_run: str | None) -> list[BackupBatch]:
    """When the platform lost its ops records: every signed, complete, not blocked backup in the bucket."""
    prefix = f"backups/{source_id}/{dataset}/" if source_id else "backups/"
    keys = [
        k for k in storage.list_keys(services.s3, prefix)
        if k.endswith("/manifest.json") and k.split("/")[2] == dataset
    ]
    batches: list[BackupBatch] = []
    problems: list[str] = []
    for key in keys:
        try:
            m = _manifest(services, key)
        except RestoreError as exc:
            problems.append(str(exc))
            continue
        if m.get("decision") == "block":
            continue
        batches.append(BackupBatch(m["batch_id"], m.get("run_id") or m["batch_id"].split("|")[0],
                                   m["source_id"], key, m, _manifest_time(m, key)))
    if problems:
        raise _refusal(dataset, len(keys), problems, [])
    batches.sort(key=lambda b: (b.order, b.batch_id, b.manifest_key))
    return _cut(batches, lambda b: b.run_id, as_of_run, dataset)


def _scratch_file() -> Path:
    """A fresh local file name for one object being verified (streamed to disk, not held in memory)."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="sapnhap-verify-")
    os.close(fd)
    return Path(name)


def verify_backups(services: Services, batches: list[BackupBatch]) -> int:
    """Check every object of every manifest against its sha256; raise :class:`RestoreError` listing every mismatch."""
    n = 0
    problems: list[str] = []
    for b in batches:
        for name, obj in b.manifest["objects"].items():
            # An object in parts (a batch of more than one chunk): every part listed is checked.
            parts = storage.parts_of(obj)
            if len(parts) > 1 and storage.multipart(parts)["sha256"] != obj.get("sha256"):
                problems.append(f"{name} of batch {b.batch_id}: its parts do not match manifest {b.manifest_key}")
                continue
            bad = False
            for part in parts:
                try:
                    storage.get_file(services.s3, str(part["key"]), _scratch_file(), str(part["sha256"])).unlink()
                except storage.BackupError as exc:
                    if "checksum mismatch" not in str(exc) and "NoSuchKey" not in str(exc):
                        raise  # the bucket is unreachable: worth trying again
                    problems.append(f"{name} of batch {b.batch_id} does not match manifest {b.manifest_key}: {exc}")
                    bad = True
            if not bad:
                n += 1
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise RestoreError(f"restore refused: {len(problems)} backup objects do not match their manifests; "
                           f"nothing was written:\n{lines}\nRestore from an earlier run (--as-of-run) or recover "
                           "the objects.")
    return n


@dataclass(frozen=True)
class FlagBackup:
    """The deletion flags one verification backed up for one source's dataset (verified)."""

    key: str
    source_id: str
    order: datetime
    flagged: dict = field(repr=False)


def _flag_rows(services: Services, dataset: str, source_id: str | None) -> list[tuple] | None:
    """(key, sha256, source_id, taken_at) of the flag backups ops lists; None if the platform has no such records."""
    try:
        with psycopg.connect(services.platform_dsn) as conn:
            if conn.execute("SELECT to_regclass('ops.deletion_flag_backups') IS NULL").fetchone()[0]:
                return None
            if not conn.execute("SELECT EXISTS (SELECT 1 FROM ops.batches)").fetchone()[0]:
                return None
            return conn.execute(
                """SELECT object_key, sha256, source_id, taken_at FROM ops.deletion_flag_backups
                   WHERE dataset = %s AND (%s::text IS NULL OR source_id = %s) ORDER BY taken_at, object_key""",
                (dataset, source_id, source_id),
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return None


def _flag_backup(services: Services, key: str, sha256: str | None, dataset: str) -> FlagBackup:
    from sapnhap.verify import DELETION_FLAGS_KIND

    try:
        data = storage.get_bytes(services.s3, key, sha256)
        payload = json.loads(data.decode("utf-8"))
    except storage.BackupError as exc:
        if "checksum mismatch" in str(exc):
            raise RestoreError(f"deletion flags {key} do not match their checksum: {exc}") from exc
        if "NoSuchKey" in str(exc) or "404" in str(exc):
            raise RestoreError(f"deletion flags {key} are not in the bucket", missing=[key]) from exc
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RestoreError(f"deletion flags {key} are not a flag backup: {exc}") from exc
    try:
        storage.verify_manifest_signature(payload, services.signing_key, name=f"deletion flags {key}")
    except storage.SignatureError as exc:
        raise RestoreError(str(exc)) from exc
    if payload.get("kind") != DELETION_FLAGS_KIND or payload.get("dataset") != dataset or not payload.get("complete"):
        raise RestoreError(f"deletion flags {key} are not a complete flag backup of {dataset}")
    return FlagBackup(key, payload["source_id"], datetime.fromisoformat(payload["taken_at"]), payload["flagged"])


def list_flag_backups(services: Services, dataset: str, *, source_id: str | None = None,
                      until: datetime | None = None) -> list[FlagBackup]:
    """The deletion flags a restore of ``dataset`` applies, in the order they were taken, each verified
    (checksum, signature); those taken after ``until`` (the last batch of an ``as_of_run`` restore) left out.

    Raises :class:`RestoreError` listing every flag backup ops lists that is missing or does not
    verify. Without ops records: every signed flag backup of the dataset in the bucket.
    """
    from sapnhap.verify import DELETION_FLAGS_PREFIX

    rows = _flag_rows(services, dataset, source_id)
    if rows is None:
        prefix = f"{DELETION_FLAGS_PREFIX}{source_id}/{dataset}/" if source_id else DELETION_FLAGS_PREFIX
        rows = [(k, None, None, None) for k in storage.list_keys(services.s3, prefix)
                if k.split("/")[2] == dataset and k.endswith(".json")]
    flags: list[FlagBackup] = []
    problems: list[str] = []
    missing: list[str] = []
    for key, sha256, _, _ in rows:
        try:
            flags.append(_flag_backup(services, key, sha256, dataset))
        except RestoreError as exc:
            problems.append(str(exc))
            missing += exc.missing
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise RestoreError(f"restore refused: {len(problems)} of {len(rows)} backups of the deletion flags of {dataset} "
                           f"do not verify; nothing was written:\n{lines}\nRecover these objects.", missing=missing)
    flags.sort(key=lambda f: (f.order, f.key))
    return [f for f in flags if until is None or f.order <= until]


def _apply_flags(conn: psycopg.Connection, work: sql.Composable, flags: FlagBackup) -> None:
    """Make the work table's deletion flags of one source what the verification left them."""
    keys = list(flags.flagged)
    conn.execute(
        sql.SQL("""UPDATE {w} AS w SET deleted_in_source_at = f.at
                   FROM unnest(%s::text[], %s::timestamptz[]) AS f(k, at)
                   WHERE w.source_id = %s AND w.source_key = f.k AND w.deleted_in_source_at IS DISTINCT FROM f.at""").format(w=work),
        (keys, [flags.flagged[k] for k in keys], flags.source_id),
    )
    conn.execute(
        sql.SQL("""UPDATE {w} SET deleted_in_source_at = NULL
                   WHERE source_id = %s AND deleted_in_source_at IS NOT NULL AND NOT (source_key = ANY(%s))""").format(w=work),
        (flags.source_id, keys),
    )


def _check_target(target_schema: str) -> None:
    if not _SCHEMA_RE.match(target_schema) or target_schema in _PROTECTED_SCHEMAS:
        raise RestoreError(f"target schema {target_schema!r} refused: use core or a scratch schema name")


def restore_dataset(services: Services, dataset: str, *, source_id: str | None = None, as_of_run: str | None = None,
                    target_schema: str = "core", compare: bool = False, drill: bool = False,
                    confirm: bool = False) -> RestoreReport:
    """Rebuild ``dataset`` (or one source's part of it) from the backups into ``target_schema``.

    Returns a :class:`RestoreReport` with the batches replayed, the (rows, checksum) of the result
    and the plan (what syncing ``core`` to it inserts, updates and deletes); with ``compare=True``
    also those of ``core.<dataset>`` and whether they match. Into ``core`` it writes only with
    ``confirm=True``; without, it returns the plan and writes nothing (``applied`` is False).
    Raises :class:`RestoreError` before writing anything if a loaded batch's backup is missing
    or does not verify.
    """
    _check_target(target_schema)
    ds = get_dataset(dataset)
    batches = list_backups(services, dataset, source_id=source_id, as_of_run=as_of_run)
    if not batches:
        raise RestoreError(f"no loaded batch of {dataset}{' from ' + source_id if source_id else ''} to restore")
    verified = verify_backups(services, batches)
    flags = list_flag_backups(services, dataset, source_id=source_id,
                              until=batches[-1].order if as_of_run else None)
    verified += len(flags)
    core = sql.Identifier("core", ds.name)
    writes_core = target_schema == "core"
    with psycopg.connect(services.platform_dsn) as conn, conn.transaction():
        # The nightly load of these sources waits (same advisory locks) until the restore commits.
        for sid in sorted({b.source_id for b in batches}):
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{sid}/{dataset}",))
        if writes_core:
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
        events = sorted([(b.order, 0, b) for b in batches] + [(f.order, 1, f) for f in flags], key=lambda e: e[:2])
        for _, _, item in events:
            if isinstance(item, FlagBackup):
                _apply_flags(conn, work, item)
                continue
            # Older manifests list one valid object, a batch of more than one chunk its parts: read part by part.
            obj = item.manifest["objects"]["valid"]
            merge_batch(conn, dataset=dataset, batch_id=item.batch_id, target=work, record_merges=False,
                        valid=(pq.read_table(io.BytesIO(storage.get_bytes(services.s3, p["key"], p["sha256"]))).to_pandas()
                               for p in storage.parts_of(obj)))
        rows, checksum = table_fingerprint(conn, work, dataset)
        report = RestoreReport(dataset, source_id, as_of_run, target_schema, [b.batch_id for b in batches],
                               verified, rows, checksum, rows_by_source=_rows_by_source(conn, work),
                               plan=_plan(conn, ds.name, work, list(ds.natural_key), restored_columns(ds)))
        if writes_core and not confirm:
            report.platform_rows, report.platform_checksum = table_fingerprint(conn, core, dataset)
            report.platform_rows_by_source = _rows_by_source(conn, core)
            report.matches_platform = report.platform_checksum == report.checksum
            report.message = (f"plan only, nothing written: core.{ds.name} would get {report.plan['insert']} "
                              f"inserted, {report.plan['update']} updated, {report.plan['delete']} deleted rows; "
                              "confirm to apply")
            raise psycopg.Rollback()
        if writes_core:
            _sync_core(conn, ds.name, work, list(ds.natural_key), restored_columns(ds))
            report.message = (f"core synced to the restored rows: {report.plan['insert']} inserted, "
                              f"{report.plan['update']} updated, {report.plan['delete']} deleted")
            if as_of_run:
                report.message += ("; cursors were not moved back: the next nightly run only reads what changed "
                                   "after them")
        report.applied = True
        if compare or writes_core:
            report.platform_rows, report.platform_checksum = table_fingerprint(conn, core, dataset)
            report.platform_rows_by_source = _rows_by_source(conn, core)
            report.matches_platform = report.platform_checksum == report.checksum
        conn.execute(
            """INSERT INTO ops.restores (dataset, source_id, as_of_run, target_schema, batches, rows, checksum,
                   matches_platform, drill, message) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (dataset, source_id, as_of_run, target_schema, len(batches), rows, checksum, report.matches_platform,
             drill, report.message or None),
        )
    log.info("restore of %s%s into %s: %d batches, %d rows, checksum %s, plan %s, applied: %s, matches platform: %s",
             dataset, f"/{source_id}" if source_id else "", target_schema, len(batches), rows, checksum,
             {k: report.plan[k] for k in ("insert", "update", "delete")}, report.applied, report.matches_platform)
    return report


def _plan(conn: psycopg.Connection, table: str, work: sql.Composable, key_cols: list[str], cols: list[str]) -> dict:
    """Rows syncing ``core.<table>`` to ``work`` would insert, update and delete, in total and per source."""
    core = sql.Identifier("core", table)
    join = sql.SQL(" AND ").join(sql.SQL("w.{0} = t.{0}").format(sql.Identifier(k)) for k in key_cols)
    differs = sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM w.{0}").format(sql.Identifier(c))
                                   for c in cols if c not in key_cols)
    rows = conn.execute(sql.SQL(
        """SELECT t.source_id, 'delete', count(*) FROM {core} t WHERE NOT EXISTS (SELECT 1 FROM {work} w WHERE {join})
           GROUP BY 1
           UNION ALL
           SELECT w.source_id, 'insert', count(*) FROM {work} w WHERE NOT EXISTS (SELECT 1 FROM {core} t WHERE {join})
           GROUP BY 1
           UNION ALL
           SELECT w.source_id, 'update', count(*) FROM {work} w JOIN {core} t ON {join} WHERE {differs} GROUP BY 1"""
    ).format(core=core, work=work, join=join, differs=differs)).fetchall()
    plan: dict = {"insert": 0, "update": 0, "delete": 0, "by_source": {}}
    for sid, action, n in rows:
        plan[action] += int(n)
        plan["by_source"].setdefault(sid, {"insert": 0, "update": 0, "delete": 0})[action] += int(n)
    return plan


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
    """Datasets with at least one manifest in the bucket, or a batch the platform loaded (whose
    backups may all be gone: the drill must say so, not skip the dataset)."""
    found = {k.split("/")[2] for k in storage.list_keys(services.s3, "backups/") if k.endswith("/manifest.json")}
    try:
        with psycopg.connect(services.platform_dsn) as conn:
            found |= {r[0] for r in conn.execute(
                "SELECT DISTINCT dataset FROM ops.batches WHERE status = 'loaded'").fetchall()}
    except psycopg.errors.UndefinedTable:
        pass
    return sorted(found)


def restore_drill(services: Services, *, recipients: list[str], datasets: list[str] | None = None,
                  schema: str = DRILL_SCHEMA, run_id: str | None = None) -> dict:
    """The weekly restore drill: restore every backed-up dataset into a scratch schema, compare
    rows and checksum with the platform, email the result in Vietnamese, drop the scratch copy.

    The email goes through the outbox (``ops.outbox``, kind ``restore_drill``): stored before it is
    sent, once per (drill run, recipient, content), so a retried drill with the same result sends
    nothing new and one whose email could not go out sends it with the next drill or retry.

    Returns ``{"ok": bool, "reports": [...], "errors": {dataset: message}, "sent_to": [...]}``;
    a failed comparison or restore is reported by email, then raised as :class:`RestoreError`
    so the DAG run shows it (also when the mail server is down: the email stays pending). A drill
    that passed but whose email could not be delivered raises
    :class:`sapnhap.reports.outbox.ReportDeliveryError` (worth a retry).
    """
    reports: list[RestoreReport] = []
    errors: dict[str, str] = {}
    transient: list[str] = []
    try:
        for dataset in datasets or backed_up_datasets(services):
            try:
                reports.append(restore_dataset(services, dataset, target_schema=schema, compare=True, drill=True))
            except (storage.BackupError, psycopg.Error) as exc:
                errors[dataset] = str(exc)
                if is_retryable(exc):
                    transient.append(dataset)
    finally:
        drop_scratch(services, schema)
    ok = not errors and bool(reports) and all(r.matches_platform for r in reports)
    delivery = None
    if recipients:
        delivery = _send_drill_mail(services, recipients, reports, errors, ok,
                                    run_id or f"drill-{datetime.now(UTC).date().isoformat()}")
    result = {"ok": ok, "reports": [r.as_dict() for r in reports], "errors": errors, "sent_to": recipients}
    if ok and delivery is not None:
        from sapnhap.reports.outbox import raise_if_undelivered

        raise_if_undelivered(delivery, services.smtp, what="restore drill emails")
    if not ok:
        mismatched = [r.dataset for r in reports if not r.matches_platform]
        raise RestoreError(f"restore drill failed: {errors or mismatched}"
                           f"{'' if reports or errors else 'no backups found'}",
                           # Only a lost connection is worth another try; a mismatch would only repeat the alarm.
                           retryable=bool(errors) and len(transient) == len(errors) and not mismatched)
    return result


DRILL_MAIL = "restore_drill"  # its kind in ops.outbox


def _send_drill_mail(services: Services, recipients: list[str], reports: list[RestoreReport],
                     errors: dict[str, str], ok: bool, run_id: str):  # noqa: ANN202 - an outbox Delivery
    from sapnhap.reports.mail import new_message
    from sapnhap.reports.outbox import deliver_pending, enqueue

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
    subject = f"[sapnhap] Diễn tập khôi phục dữ liệu: {'ĐẠT' if ok else 'KHÔNG ĐẠT'}"
    body = "\n".join(lines)
    # One email per (drill run, recipient, content): a retry with the same result adds nothing.
    digest = storage.sha256_bytes(f"{subject}\n{body}".encode())[:16]
    with psycopg.connect(services.platform_dsn) as conn:
        for to in recipients:
            msg = new_message(subject, services.smtp.from_addr, to)
            msg.set_content(body, charset="utf-8")
            enqueue(conn, kind=DRILL_MAIL, dedup_key=f"{DRILL_MAIL}|{run_id}|{to.strip().lower()}|{digest}",
                    run_id=run_id, recipient=to, msg=msg, meta={"ok": ok})
    return deliver_pending(services.platform_dsn, services.smtp, kinds=(DRILL_MAIL,))


def drill_recipients(services: Services) -> list[str]:
    """Who gets the drill result: ``SAPNHAP_DRILL_RECIPIENTS`` (comma-separated), else the sender address."""
    text = os.environ.get("SAPNHAP_DRILL_RECIPIENTS", "")
    return [a.strip() for a in text.split(",") if a.strip()] or [services.smtp.from_addr]


def expire_backups(services: Services, retention_days: int | None, *, now: datetime | None = None) -> dict:
    """Delete backup objects older than ``retention_days`` that no restore of the platform needs.

    Kept whatever their age: every object of every backup a load committed (``ops.loaded_backups``
    and the ``loaded`` rows of ``ops.batches``), since a restore replays them all from the first
    full load. Expired: attempts that never loaded (failed, blocked, superseded by a retry).
    Objects still under Object Lock are left and counted. Refuses when the platform has no ops
    records (nothing proves which backups are needed). Returns counts and the expired keys.
    """
    if not retention_days:
        return {"expired": [], "kept": 0, "locked": [], "retention_days": None}
    try:
        with psycopg.connect(services.platform_dsn) as conn:
            if not conn.execute("SELECT EXISTS (SELECT 1 FROM ops.batches)").fetchone()[0]:
                raise RestoreError("retention refused: the platform has no ops.batches records, so nothing proves "
                                   "which backups a restore needs; nothing was deleted")
            needed = {r[0] for r in conn.execute(
                "SELECT manifest_key FROM ops.batches WHERE status = 'loaded' AND manifest_key IS NOT NULL"
            ).fetchall()}
            needed |= {r[0] for r in conn.execute(
                "SELECT manifest_key FROM ops.loaded_backups WHERE status = 'loaded'").fetchall()}
    except psycopg.errors.UndefinedTable as exc:
        raise RestoreError(f"retention refused: the platform's ops records are missing ({exc}); nothing was deleted") \
            from exc
    # An attempt's objects live under its own folder, next to its manifest: keep the whole folder.
    keep_prefixes = tuple(k[: -len("manifest.json")] for k in needed if k.endswith("manifest.json"))
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    expired: list[str] = []
    locked: list[str] = []
    kept = 0
    for key, modified in storage.list_objects(services.s3, "backups/"):
        if key in needed or key.startswith(keep_prefixes) or modified >= cutoff:
            kept += 1
            continue
        try:
            storage.delete_object(services.s3, key)
        except storage.BackupError as exc:
            if "AccessDenied" not in str(exc):
                raise
            locked.append(key)  # Object Lock still holds it: a later run deletes it
            continue
        expired.append(key)
    log.info("backup retention (%d days): %d objects expired, %d kept, %d still locked", retention_days,
             len(expired), kept, len(locked))
    return {"expired": expired, "kept": kept, "locked": locked, "retention_days": retention_days}
