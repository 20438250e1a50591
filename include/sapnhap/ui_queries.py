"""What the "Sáp nhập" pages of the Airflow UI show and do, as plain values (``plugins/sapnhap_ui``).

Pure reads of the platform (``ops.*``, ``registry.*``) and the bucket, plus the two things
the data team does from the UI: decide a group of split-commune records (one
:func:`sapnhap.reference.platform.record_decision` per record, with the user's name) and drop
a corrected file into the fix loop (``landing/corrections/<source>/``). Quarantine rows are
masked exactly as in the owners' emails (:class:`sapnhap.reports.model.QuarantineRow`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sapnhap import storage
from sapnhap.reference._text import fold
from sapnhap.reference.address import parse_address
from sapnhap.reports.model import QuarantineRow
from sapnhap.reports.queries import _PII_COLUMNS, HISTORY_RUNS
from sapnhap.services import Services

NIGHTLY_DAG_ID = "sapnhap_nightly"
MANIFEST_NAME = "manifest.json"
DATA_DOCS_DIR = "data_docs/"
MAX_QUARANTINE_ROWS = 500
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------- Đêm qua


@dataclass
class DatasetOutcome:
    """One (source, dataset) of a run: the counts the data team asks about every morning."""

    source_id: str
    dataset: str
    status: str
    extracted: int
    new: int
    updated: int
    unchanged: int
    quarantined: int
    warned: int
    merged: int
    blocked: int
    reconciled: bool | None
    decision: str | None
    manifest_key: str | None
    message: str | None
    # Only a batch with a failing check has Data Docs (ops.batches.data_docs_key); a clean one has none.
    has_data_docs: bool = True

    @property
    def data_docs_key(self) -> str | None:
        """Where the batch's Data Docs site starts in the bucket (next to its manifest), if it has one."""
        if not self.manifest_key or not self.has_data_docs:
            return None
        return posixpath.join(posixpath.dirname(self.manifest_key), DATA_DOCS_DIR, "index.html")


@dataclass
class RunTrend:
    """One run of the trend: totals over every source and dataset."""

    run_id: str
    started_at: dt.datetime | None
    status: str
    extracted: int
    quarantined: int
    loaded: int
    reconciled: bool | None


@dataclass
class Tonight:
    """The latest run (or a chosen one) with its outcome per source and dataset and the trend."""

    run_id: str | None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    status: str | None = None
    crosswalk_version: str | None = None
    message: str | None = None
    outcomes: list[DatasetOutcome] = field(default_factory=list)
    trend: list[RunTrend] = field(default_factory=list)
    open_reviews: int = 0

    @property
    def reconciled(self) -> bool | None:
        """True when every batch of the run reconciled, False when one did not, None when none did yet."""
        flags = [o.reconciled for o in self.outcomes if o.reconciled is not None]
        return all(flags) if flags else None


def tonight(dsn: str, run_id: str | None = None) -> Tonight:
    """The outcome of ``run_id`` (default: the run started last) per source and dataset, and the last 30 runs."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute(
            """SELECT run_id, started_at, finished_at, status, crosswalk_version, message FROM ops.runs
               WHERE (%(run)s::text IS NULL OR run_id = %(run)s) ORDER BY started_at DESC LIMIT 1""",
            {"run": run_id},
        ).fetchone()
        if run is None:
            return Tonight(run_id=None)
        rows = cur.execute(
            """SELECT b.source_id, b.dataset, b.status, b.extracted, b.inserted, b.updated, b.unchanged,
                      b.quarantined, b.warned, b.merged_in_batch + b.merged_cross_source AS merged,
                      coalesce(r.not_loaded_blocked, 0) AS blocked, r.ok AS reconciled, b.decision,
                      b.manifest_key, b.message, b.data_docs_key IS NOT NULL AS has_data_docs
               FROM ops.batches b
               LEFT JOIN ops.reconciliation r
                 ON r.run_id = b.run_id AND r.source_id = b.source_id AND r.dataset = b.dataset
               WHERE b.run_id = %(run)s ORDER BY b.source_id, b.dataset""",
            {"run": run["run_id"]},
        ).fetchall()
        trend = cur.execute(
            """WITH recent AS (SELECT run_id, started_at, status FROM ops.runs ORDER BY started_at DESC LIMIT %(n)s)
               SELECT recent.run_id, recent.started_at, recent.status,
                      coalesce(sum(b.extracted), 0) AS extracted, coalesce(sum(b.quarantined), 0) AS quarantined,
                      coalesce(sum(b.inserted + b.updated + b.unchanged), 0) AS loaded,
                      (SELECT bool_and(ok) FROM ops.reconciliation r WHERE r.run_id = recent.run_id) AS reconciled
               FROM recent LEFT JOIN ops.batches b USING (run_id)
               GROUP BY recent.run_id, recent.started_at, recent.status ORDER BY recent.started_at""",
            {"n": HISTORY_RUNS},
        ).fetchall()
        reviews = cur.execute("SELECT count(*) AS n FROM registry.review_queue WHERE status = 'open'").fetchone()
    return Tonight(
        run_id=run["run_id"],
        started_at=run["started_at"],
        finished_at=run["finished_at"],
        status=run["status"],
        crosswalk_version=run["crosswalk_version"],
        message=run["message"],
        outcomes=[
            DatasetOutcome(
                source_id=r["source_id"], dataset=r["dataset"], status=r["status"], extracted=r["extracted"],
                new=r["inserted"], updated=r["updated"], unchanged=r["unchanged"], quarantined=r["quarantined"],
                warned=r["warned"], merged=r["merged"], blocked=r["blocked"], reconciled=r["reconciled"],
                decision=r["decision"], manifest_key=r["manifest_key"], message=r["message"],
                has_data_docs=r["has_data_docs"],
            )
            for r in rows
        ],
        trend=[RunTrend(**t) for t in trend],
        open_reviews=int(reviews["n"]) if reviews else 0,
    )


# ---------------------------------------------------------------------------- Cách ly


@dataclass(frozen=True)
class QuarantineFilter:
    """What the quarantine page narrows to; empty fields match everything."""

    source_id: str | None = None
    dataset: str | None = None
    expectation: str | None = None
    severity: str | None = None
    source_key: str | None = None


def quarantine_counts(dsn: str) -> list[dict[str, Any]]:
    """Open quarantine rows per source, dataset and severity (rows and distinct records)."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT source_id, dataset, severity, count(*) AS rows, count(DISTINCT source_key) AS records
               FROM ops.quarantine WHERE status = 'open'
               GROUP BY source_id, dataset, severity ORDER BY source_id, dataset, severity"""
        ).fetchall()


def open_quarantine(dsn: str, flt: QuarantineFilter = QuarantineFilter(), *, limit: int | None = MAX_QUARANTINE_ROWS
                    ) -> list[QuarantineRow]:
    """Open quarantine rows matching ``flt``, masked as in the owners' reports (at most ``limit``)."""
    clauses = [sql.SQL("status = 'open'")]
    params: dict[str, Any] = {}
    for name in ("source_id", "dataset", "expectation", "severity"):
        value = getattr(flt, name)
        if value:
            clauses.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    if flt.source_key:
        clauses.append(sql.SQL("source_key ILIKE {}").format(sql.Placeholder("source_key")))
        params["source_key"] = f"%{flt.source_key}%"
    query = sql.SQL(
        """SELECT quarantine_id, source_id, dataset, source_key, expectation, column_name, value_masked, reason_vi,
                  fix_vi, severity, status, first_batch_id, last_batch_id, resolved_batch_id,
                  ARRAY[{pii}] AS pii_values
           FROM ops.quarantine WHERE {where}
           ORDER BY source_id, dataset, expectation, column_name NULLS FIRST, source_key, quarantine_id {limit}"""
    ).format(
        pii=sql.SQL(", ").join(sql.SQL("payload->>{}").format(sql.Literal(c)) for c in _PII_COLUMNS),
        where=sql.SQL(" AND ").join(clauses),
        limit=sql.SQL("LIMIT {}").format(sql.Literal(limit)) if limit else sql.SQL(""),
    )
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [QuarantineRow.from_ops(r) for r in rows]


def quarantine_filter_choices(dsn: str) -> dict[str, list[str]]:
    """The values each filter can take (only values with open rows)."""
    with psycopg.connect(dsn) as conn:
        return {
            name: [r[0] for r in conn.execute(
                sql.SQL("SELECT DISTINCT {c} FROM ops.quarantine WHERE status = 'open' ORDER BY 1").format(
                    c=sql.Identifier(name)))]
            for name in ("source_id", "dataset", "expectation", "severity")
        }


def last_run_warnings(dsn: str, flt: QuarantineFilter = QuarantineFilter()) -> list[QuarantineRow]:
    """Warn-check failures (``ops.warnings``; the records loaded) of the latest run, matching ``flt``."""
    clauses = [sql.SQL(
        "batch_id IN (SELECT batch_id FROM ops.batches"
        " WHERE run_id = (SELECT run_id FROM ops.runs ORDER BY started_at DESC LIMIT 1))"
    )]
    params: dict[str, Any] = {}
    for name in ("source_id", "dataset", "expectation"):
        value = getattr(flt, name)
        if value:
            clauses.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    if flt.source_key:
        clauses.append(sql.SQL("source_key ILIKE {}").format(sql.Placeholder("source_key")))
        params["source_key"] = f"%{flt.source_key}%"
    query = sql.SQL(
        """SELECT warning_id, batch_id, source_id, dataset, source_key, expectation, column_name, value_masked,
                  reason_vi, fix_vi
           FROM ops.warnings WHERE {where}
           ORDER BY source_id, dataset, expectation, column_name NULLS FIRST, source_key, warning_id"""
    ).format(where=sql.SQL(" AND ").join(clauses))
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [QuarantineRow.from_warning(r) for r in rows]


def quarantine_xlsx(dsn: str, flt: QuarantineFilter) -> bytes:
    """The workbook the owner gets with their report, for the rows of ``flt`` (all of them, no page limit).

    Blocking rows in the rows sheet; last night's warnings (records loaded) in their own sheet,
    as in the report's attachment. A ``severity`` filter picks one of the two.
    """
    from sapnhap.reports.attachment import quarantine_workbook

    rows = open_quarantine(dsn, flt, limit=None) if flt.severity in (None, "block") else []
    warnings = last_run_warnings(dsn, flt) if flt.severity in (None, "warn") else []
    return quarantine_workbook(rows, warnings)


class UploadError(ValueError):
    """An uploaded correction file is refused; the message (Vietnamese) says why, without its content."""


def upload_correction(services: Services, source_ids: Sequence[str], source_id: str, file_name: str, data: bytes,
                      *, uploaded_by: str) -> str:
    """Put a corrected XLSX/CSV into the fix loop of ``source_id``; return its bucket key.

    The file is read like the next run will read it (so a broken file is refused now, not at
    01:00), and it must name open quarantine rows of this source. The key carries the upload
    time and the uploader so the bucket shows who sent what.
    """
    from sapnhap.corrections import CorrectionFileError, _read_rows, correction_prefix

    if source_id not in source_ids:
        raise UploadError(f"Không có hệ thống nguồn '{source_id}'.")
    if not data:
        raise UploadError("Tệp rỗng.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"Tệp lớn hơn {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    suffix = posixpath.splitext(file_name.lower())[1]
    if suffix not in (".xlsx", ".csv"):
        raise UploadError("Chỉ nhận tệp .xlsx (tệp đính kèm thư báo cáo) hoặc .csv cùng các cột.")
    try:
        frame = _read_rows(file_name, data)
    except CorrectionFileError as exc:
        raise UploadError(f"Không đọc được tệp: {str(exc).split(': ', 1)[-1]}") from exc
    if frame.empty:
        raise UploadError("Tệp không có dòng nào điền cột corrected_value.")
    ids = sorted({int(i) for i in frame["quarantine_id"].dropna()})
    with psycopg.connect(services.platform_dsn) as conn:
        known = {r[0] for r in conn.execute(
            "SELECT quarantine_id FROM ops.quarantine WHERE quarantine_id = ANY(%s) AND source_id = %s AND status = 'open'",
            (ids, source_id),
        )}
    unknown = [i for i in ids if i not in known]
    if not known:
        raise UploadError(f"Không dòng nào của tệp là dòng cách ly đang mở của '{source_id}' (quarantine_id {unknown[:10]}).")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    who = _SAFE_FILE_NAME.sub("_", uploaded_by)[:40] or "user"
    base = _SAFE_FILE_NAME.sub("_", posixpath.basename(file_name.replace("\\", "/")))[:80]
    key = f"{correction_prefix(source_id)}{stamp}-{who}-{base}"
    content_type = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if suffix == ".xlsx"
                    else "text/csv")
    storage.put_bytes(services.s3, key, data, content_type)
    return key


def pending_corrections(services: Services, source_id: str | None = None) -> list[str]:
    """Correction files waiting in the bucket (the next run takes each new one once)."""
    from sapnhap.corrections import CORRECTIONS_PREFIX, correction_prefix

    return sorted(storage.list_keys(services.s3, correction_prefix(source_id) if source_id else CORRECTIONS_PREFIX))


# ---------------------------------------------------------------------------- Chờ quyết định


@dataclass
class Candidate:
    """A new commune a split old commune's record may go to, with the province's rules for it."""

    code: str
    name: str
    rules: list[str] = field(default_factory=list)


@dataclass
class ReviewGroup:
    """Open review-queue records of one old commune with the same village/street detail."""

    group_id: str
    old_commune_code: str
    old_commune_name: str | None
    detail: str | None
    record_keys: list[str]
    sources: list[str]
    datasets: list[str]
    candidates: list[Candidate]
    first_seen_run: str | None


def _detail_of(address_detail: str | None) -> str | None:
    """The village/street part of an address ("Thôn Nà Lừa, Xã Việt Lâm" -> "Thôn Nà Lừa")."""
    if not address_detail:
        return None
    return parse_address(address_detail)["detail"] or address_detail.strip() or None


def group_id_of(old_commune_code: str, detail: str | None) -> str:
    """A stable id of a review group: the old commune and the folded detail."""
    return hashlib.sha256(f"{old_commune_code}|{fold(detail)}".encode()).hexdigest()[:16]


def review_groups(dsn: str, *, crosswalk_version: str | None = None) -> list[ReviewGroup]:
    """Open review-queue records grouped by old commune and village/street detail, biggest groups first."""
    from sapnhap.reference import load_reference

    version = crosswalk_version or load_reference().version
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        queued = cur.execute(
            """SELECT record_key, source_id, dataset, old_commune_code, candidates, address_detail, first_seen_run
               FROM registry.review_queue WHERE status = 'open' ORDER BY old_commune_code, record_key"""
        ).fetchall()
        communes = sorted({q["old_commune_code"] for q in queued})
        targets = cur.execute(
            """SELECT old_commune_code, old_commune_name, new_commune_code, new_commune_name FROM registry.v_old_to_new
               WHERE reference_version = %s AND old_commune_code = ANY(%s) ORDER BY new_commune_code""",
            (version, communes),
        ).fetchall()
        rules = cur.execute(
            """SELECT old_commune_code, match_kind, pattern, new_commune_code FROM registry.split_rules
               WHERE old_commune_code = ANY(%s) ORDER BY match_kind, pattern""",
            (communes,),
        ).fetchall()
    names = {t["old_commune_code"]: t["old_commune_name"] for t in targets}
    kind_vi = {"village": "thôn/tổ dân phố", "street": "đường phố"}
    candidates: dict[str, list[Candidate]] = {}
    for t in targets:
        c = Candidate(t["new_commune_code"], t["new_commune_name"])
        c.rules = [f"{kind_vi.get(r['match_kind'], r['match_kind'])}: {r['pattern']}" for r in rules
                   if r["old_commune_code"] == t["old_commune_code"] and r["new_commune_code"] == c.code]
        candidates.setdefault(t["old_commune_code"], []).append(c)
    groups: dict[str, ReviewGroup] = {}
    for q in queued:
        detail = _detail_of(q["address_detail"])
        gid = group_id_of(q["old_commune_code"], detail)
        g = groups.get(gid)
        if g is None:
            listed = set(q["candidates"].split("|"))
            g = groups[gid] = ReviewGroup(
                group_id=gid, old_commune_code=q["old_commune_code"], old_commune_name=names.get(q["old_commune_code"]),
                detail=detail, record_keys=[], sources=[], datasets=[],
                candidates=[c for c in candidates.get(q["old_commune_code"], []) if c.code in listed]
                or [Candidate(code, code) for code in sorted(listed)],
                first_seen_run=q["first_seen_run"],
            )
        g.record_keys.append(q["record_key"])
        for attr, value in (("sources", q["source_id"]), ("datasets", q["dataset"])):
            if value and value not in getattr(g, attr):
                getattr(g, attr).append(value)
    return sorted(groups.values(), key=lambda g: (-len(g.record_keys), g.old_commune_code, fold(g.detail)))


def decide_group(dsn: str, group_id: str, new_commune_code: str, *, decided_by: str) -> int:
    """Record one decision for every open record of a review group; return how many were decided.

    Each record goes through :func:`record_decision` (which refuses a commune that is not a
    candidate); the next run of the record's source maps it with ``mapping_method = 'decision'``.
    """
    from sapnhap.reference.platform import record_decision

    if not decided_by:
        raise ValueError("a decision needs the name of who took it")
    group = next((g for g in review_groups(dsn) if g.group_id == group_id), None)
    if group is None:
        raise KeyError(group_id)
    for key in group.record_keys:
        record_decision(dsn, key, group.old_commune_code, new_commune_code, decided_by=decided_by)
    return len(group.record_keys)


def recent_decisions(dsn: str, limit: int = 50) -> list[dict[str, Any]]:
    """The latest decisions with who took them and whether a run has applied them yet.

    Applied means the record is on the platform mapped by the decision (``mapping_method =
    'decision'`` in its core table), not merely out of the queue.
    """
    from sapnhap.datasets import DATASETS

    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT d.record_key, d.old_commune_code, d.new_commune_code, n.new_commune_name, d.decided_by,
                      d.decided_at, q.source_id, q.dataset
               FROM registry.mapping_decisions d
               LEFT JOIN registry.review_queue q USING (record_key)
               LEFT JOIN LATERAL (SELECT new_commune_name FROM registry.crosswalk c
                                  WHERE c.new_commune_code = d.new_commune_code
                                    AND c.reference_version = d.reference_version LIMIT 1) n ON true
               ORDER BY d.decided_at DESC, d.record_key LIMIT %s""",
            (limit,),
        ).fetchall()
        applied: set[str] = set()
        for dataset in sorted({r["dataset"] for r in rows if r["dataset"] in DATASETS}):
            keys = [r["record_key"] for r in rows if r["dataset"] == dataset]
            applied |= {key for (key,) in conn.execute(
                sql.SQL("SELECT source_id || ':' || source_key FROM core.{t} "
                        "WHERE source_id || ':' || source_key = ANY(%s) AND mapping_method = 'decision'").format(
                    t=sql.Identifier(dataset)),
                (keys,),
            )}
    return [{**r, "applied": r["record_key"] in applied} for r in rows]


# ---------------------------------------------------------------------------- Tra cứu


@dataclass
class Lookup:
    """Old and new units matching a query, as of a date, in the crosswalk version in force then."""

    query: str
    as_of: dt.date
    crosswalk_version: str
    old_to_new: list[dict[str, Any]]
    new_to_old: list[dict[str, Any]]
    handover: list[dict[str, Any]]


def crosswalk_version_on(dsn: str, as_of: dt.date) -> str:
    """The published crosswalk version in force on ``as_of``.

    When none is in force then: the latest one published that had started, or for dates
    before the reorganization the first one.
    """
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """SELECT version FROM registry.reference_versions WHERE kind = 'crosswalk'
               ORDER BY (coalesce(effective_from, DATE '0001-01-01') <= %(d)s
                         AND coalesce(effective_to, DATE '9999-12-31') >= %(d)s) DESC,
                        coalesce(effective_from, DATE '0001-01-01') <= %(d)s DESC,
                        CASE WHEN coalesce(effective_from, DATE '0001-01-01') <= %(d)s THEN effective_from END
                            DESC NULLS LAST,
                        effective_from LIMIT 1""",
            {"d": as_of},
        ).fetchone()
    if row is None:
        raise LookupError("no crosswalk is published on the platform yet")
    return row[0]


def lookup_units(dsn: str, query: str, as_of: dt.date, *, limit: int = 200) -> Lookup:
    """Old -> new and new -> old units by code (2, 3 or 5 digits) or by name, accents optional."""
    q = query.strip()
    version = crosswalk_version_on(dsn, as_of)
    by_code = q.isdigit()
    code = q.zfill(5) if by_code and len(q) > 3 else q
    params = {"v": version, "by_code": by_code, "code": code, "q": q, "limit": limit}
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        # Names are matched in registry.units first: folding every row of the crosswalk views is slow.
        old_codes = [r["code"] for r in cur.execute(
            """SELECT DISTINCT code FROM registry.units WHERE scheme = 'old' AND level IN ('district', 'commune')
                 AND core.fold_vi(name) LIKE '%%' || core.fold_vi(%(q)s) || '%%'""", params)] if not by_code else [code]
        new_codes = [r["code"] for r in cur.execute(
            """SELECT DISTINCT code FROM registry.units WHERE scheme = 'new' AND level = 'commune'
                 AND reference_version = %(v)s AND core.fold_vi(name) LIKE '%%' || core.fold_vi(%(q)s) || '%%'""",
            params)] if not by_code else [code]
        params.update(old_codes=old_codes, new_codes=new_codes)
        old_to_new = cur.execute(
            """SELECT * FROM registry.v_old_to_new WHERE reference_version = %(v)s
                 AND (old_commune_code = ANY(%(old_codes)s) OR old_district_code = ANY(%(old_codes)s)
                      OR old_province_code = ANY(%(old_codes)s))
               ORDER BY old_district_code, old_commune_code, new_commune_code LIMIT %(limit)s""",
            params,
        ).fetchall()
        new_to_old = cur.execute(
            """SELECT * FROM registry.v_new_to_old WHERE reference_version = %(v)s
                 AND (new_commune_code = ANY(%(new_codes)s) OR new_province_code = ANY(%(new_codes)s))
               ORDER BY new_commune_code, old_district_code, old_commune_code LIMIT %(limit)s""",
            params,
        ).fetchall()
        handover_codes = sorted({r["old_commune_code"] for r in old_to_new if r["old_commune_code"]}
                                | {r["old_district_code"] for r in old_to_new})
        handover = cur.execute(
            """SELECT run_id, old_unit_code, old_unit_level, old_unit_name, source_ids, new_unit_codes,
                      crosswalk_version, datasets, object_key, sha256, created_at
               FROM ops.handover_records WHERE old_unit_code = ANY(%s)
               ORDER BY old_unit_code, created_at DESC""",
            (handover_codes,),
        ).fetchall()
    return Lookup(q, as_of, version, old_to_new, new_to_old, handover)


# ---------------------------------------------------------------------------- Văn bản


DOCUMENT_LOOKUP_COLUMNS = ("document_code", "direction", "number_symbol", "document_type", "issuer_code", "issuer_name",
                           "issuer_new_agency_code", "receiver_code", "receiver_name", "receiver_new_agency_code",
                           "issued_date", "received_date", "summary", "security_level", "status", "source_id")


def find_documents(dsn: str, agency_code: str, as_of: dt.date | None = None, *, limit: int = 500) -> list[dict[str, Any]]:
    """Documents an agency issued or received (by its old code or its code in the new structure), as of a date.

    Through ``core.find_documents_by_old_agency`` / ``_by_new_agency`` (which read the masked
    views), and masked again here: the pages are read by the data team, never cleared for
    classified documents, whatever role the UI's connection has. The summary of a document above
    ``normal`` reads :data:`sapnhap.documents.CLASSIFIED_SUMMARY_VI`.
    """
    import pandas as pd

    from sapnhap.documents import mask_summary

    cols = sql.SQL(", ").join(sql.Identifier(c) for c in DOCUMENT_LOOKUP_COLUMNS)
    query = sql.SQL(
        """SELECT {cols} FROM (SELECT * FROM core.find_documents_by_old_agency(%(c)s, %(d)s)
                             UNION SELECT * FROM core.find_documents_by_new_agency(%(c)s, %(d)s)) r
           ORDER BY issued_date, document_code LIMIT %(n)s"""
    ).format(cols=cols)
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {"c": agency_code.strip(), "d": as_of or dt.date.today(), "n": limit}).fetchall()
    if rows:
        masked = mask_summary(pd.Series([r["summary"] for r in rows], dtype=object),
                              pd.Series([r["security_level"] for r in rows], dtype=object))
        for row, summary in zip(rows, masked, strict=True):
            row["summary"] = summary
    return rows


# ---------------------------------------------------------------------------- Bucket


def bucket_key_allowed(key: str) -> bool:
    """Only the Data Docs, the batch manifests and the handover records are served from the bucket."""
    if not key or key.startswith("/") or ".." in key.split("/"):
        return False
    if key.startswith("handover/") and key.endswith(".html"):
        return True
    return key.startswith("backups/") and (f"/{DATA_DOCS_DIR}" in key or key.endswith(f"/{MANIFEST_NAME}"))


# Where GX's Data Docs pages load their styles and scripts from, and the copy the plugin serves
# instead (plugins/sapnhap_ui_static/gx/): the data team's network may have no internet access.
DATA_DOCS_ASSETS: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "js/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "css/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "js/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "js/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "css/fontawesome.all.min.css",
}


def offline_data_docs(html: str, assets_url: str) -> str:
    """A Data Docs page with its CDN styles and scripts pointing at the bundled copies under ``assets_url``."""
    base = assets_url.rstrip("/")
    for cdn, local in DATA_DOCS_ASSETS.items():
        html = html.replace(f'"{cdn}"', f'"{base}/{local}"')
    return html
