"""Handover records (biên bản bàn giao dữ liệu, R7): one per old unit a legacy system served.

For every old commune of every source (and one record per old district with the source's
totals, which also counts records whose commune could not be determined), a record lists:
the new commune(s) it went to (crosswalk), each dataset with the records extracted, loaded
and quarantined in the run (from the run's verified backups) and held by the platform now
(core lineage, by new commune, with a checksum), the backup objects (manifest keys and
sha256) and the crosswalk and code versions. It is rendered as a formal Vietnamese HTML
document, stored in the bucket under ``handover/<run>/<old_unit>.html`` and listed in
``ops.handover_records``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg

import sapnhap
from sapnhap import db, storage
from sapnhap.datasets import get_dataset
from sapnhap.reports.mail import render_template
from sapnhap.services import Services
from sapnhap.sources import Source, load_sources

log = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass
class DatasetLine:
    """One dataset of one source in a handover record."""

    dataset: str
    title_vi: str
    source_id: str
    extracted: int = 0
    loaded: int = 0
    quarantined: int = 0
    merged: int = 0
    held_by_new_unit: dict[str, int] = field(default_factory=dict)
    held_total: int = 0
    checksum: str = ""
    manifest_key: str | None = None
    manifest_sha256: str | None = None
    valid_sha256: str | None = None


@dataclass
class HandoverRecord:
    """A handover record of one old unit (commune, or district with its source totals)."""

    run_id: str
    old_unit_code: str
    old_unit_level: str
    old_unit_name: str
    old_parent_name: str
    old_province_name: str
    new_units: list[dict[str, str]]
    sources: list[dict[str, str]]
    lines: list[DatasetLine]
    crosswalk_version: str
    code_version: str
    object_key: str = ""
    sha256: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def render_handover_html(record: HandoverRecord, *, created_at: datetime) -> str:
    """The record as a formal Vietnamese document (HTML)."""
    return render_template("handover.html.j2", r=record, created=created_at.astimezone(LOCAL_TZ))


def _latest_run(conn: psycopg.Connection) -> str:
    row = conn.execute(
        """SELECT run_id FROM ops.batches WHERE manifest_key IS NOT NULL
           GROUP BY run_id ORDER BY max(created_at) DESC LIMIT 1"""
    ).fetchone()
    if row is None:
        raise LookupError("no backed-up batch in ops.batches: no handover to record")
    return row[0]


def _run_frames(services: Services, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def read(name: str, columns: list[str]) -> pd.DataFrame:
        # One object, or its parts; only the columns the counts need (a full night reads every row).
        return storage.read_parquet(services.s3, manifest["objects"][name], columns)

    return (read("transformed", ["_row_id", "source_key", "old_commune_code"]), read("valid", ["source_key"]),
            read("quarantine", ["_row_id"]), read("merged_in_batch", ["source_key", "kept_source_key"]))


def _attempt_outcomes(services: Services, manifest: dict) -> pd.DataFrame:
    """One row per record one backup attempt extracted: ``source_key``, ``old_commune_code``, ``outcome``
    (loaded, quarantined, merged, or blocked: valid but its batch was blocked)."""
    transformed, valid, quarantine, merged = _run_frames(services, manifest)
    columns = ["source_key", "old_commune_code", "outcome"]
    if not len(transformed) and not len(merged):
        return pd.DataFrame(columns=columns)
    rows = transformed[["_row_id", "source_key"]].copy()
    # A dataset whose records name no commune (documents name agencies) counts on its district's record.
    rows["old_commune_code"] = transformed["old_commune_code"] if "old_commune_code" in transformed else None
    quarantined = rows["_row_id"].isin(set(quarantine["_row_id"]) if len(quarantine) else set())
    loaded = "blocked" if manifest.get("decision") == "block" else "loaded"
    in_valid = rows["source_key"].isin(set(valid["source_key"]) if len(valid) else set())
    rows["outcome"] = None
    rows.loc[in_valid, "outcome"] = loaded
    rows.loc[quarantined, "outcome"] = "quarantined"
    out = [rows[columns]]
    if len(merged):
        commune_of_key = rows.drop_duplicates("source_key").set_index("source_key")["old_commune_code"]
        out.append(pd.DataFrame({"source_key": merged["source_key"].to_numpy(),
                                 "old_commune_code": merged["kept_source_key"].map(commune_of_key).to_numpy(),
                                 "outcome": "merged"}))
    return pd.concat(out, ignore_index=True)


def _night_outcomes(services: Services, manifests: list[dict]) -> pd.DataFrame:
    """What the night's committed attempts of one batch extracted, each record as its latest attempt left it.

    A batch is loaded by more than one attempt when its source is cleared and re-run, or its load
    retried after a new extract: the first attempt may load the night's records and a later one
    only the rows at the cursor's boundary. Every attempt counts; a record read by several counts
    once, with the outcome of the last attempt that read it.
    """
    frames = []
    for i, manifest in enumerate(manifests):
        frame = _attempt_outcomes(services, manifest)
        frame["attempt"] = i
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["source_key", "old_commune_code", "outcome", "attempt"])
    entries = pd.concat(frames, ignore_index=True)
    last = entries.groupby("source_key")["attempt"].transform("max")
    return entries[entries["attempt"] == last]


def _counts(entries: pd.DataFrame) -> dict[str, int]:
    outcome = entries["outcome"]
    return {"extracted": len(entries), "loaded": int((outcome == "loaded").sum()),
            "quarantined": int((outcome == "quarantined").sum()), "merged": int((outcome == "merged").sum())}


def _per_commune_run_counts(entries: pd.DataFrame) -> pd.DataFrame:
    """Per old commune: extracted, loaded, quarantined, merged in batch (rows merged inside the batch were extracted too)."""
    known = entries[entries["old_commune_code"].notna()]
    counts = pd.DataFrame({
        "extracted": known["old_commune_code"].value_counts(),
        **{name: known.loc[known["outcome"] == outcome, "old_commune_code"].value_counts()
           for name, outcome in (("loaded", "loaded"), ("quarantined", "quarantined"), ("merged", "merged"))},
    })
    return counts.fillna(0).astype(int)


def _core_holdings(conn: psycopg.Connection, dataset: str, source_id: str) -> pd.DataFrame:
    """Per (old commune, new commune): records the platform holds from this source, and a checksum."""
    rows = conn.execute(
        f"""SELECT old_commune_code, new_commune_code, count(*),
                   md5(string_agg(source_key || ':' || record_hash, ',' ORDER BY source_key))
            FROM core.{dataset} WHERE source_id = %s GROUP BY 1, 2""",  # noqa: S608 - dataset from the registry
        (source_id,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["old_commune_code", "new_commune_code", "held", "checksum"])


def _unit_names(conn: psycopg.Connection, crosswalk_version: str, districts: list[str]) -> tuple[dict, pd.DataFrame]:
    """Old unit names {(level, code): (name, parent)} and the crosswalk rows of ``districts``."""
    old_version = conn.execute(
        "SELECT provenance->>'old_units_version' FROM registry.reference_versions WHERE version = %s",
        (crosswalk_version,),
    ).fetchone()
    names = {
        (r[0], r[1]): (r[2], r[3])
        for r in conn.execute(
            "SELECT level, code, name, parent FROM registry.units WHERE scheme = 'old' AND reference_version = %s",
            (old_version[0] if old_version else None,),
        ).fetchall()
    }
    cw = pd.DataFrame(
        conn.execute(
            """SELECT old_district_code, old_commune_code, new_commune_code, new_commune_name, is_split
               FROM registry.crosswalk WHERE reference_version = %s AND old_district_code = ANY(%s)""",
            (crosswalk_version, districts),
        ).fetchall(),
        columns=["old_district_code", "old_commune_code", "new_commune_code", "new_commune_name", "is_split"],
    )
    return names, cw


def build_handover(services: Services, run_id: str | None = None, *, sources: list[Source] | None = None) -> list[dict]:
    """Build, store and list the handover records of a run (default: the latest run with backups).

    Returns one ``{"old_unit_code", "old_unit_level", "object_key", "sha256", ...}`` per record.
    Idempotent per (run, old unit): a record whose content is already stored is neither
    re-rendered nor re-written. Only sources with a batch the run committed (loaded or blocked)
    get records: a run that handed nothing over (its extracts found another run holding the
    lease) writes none, so two runs at once do not list the same records twice.
    """
    sources = sources if sources is not None else load_sources()
    created_at = datetime.now(LOCAL_TZ)
    with db.connect(services.platform_dsn, "handover") as conn:
        run_id = run_id or _latest_run(conn)
        # Two builds of one run (a retried task next to its zombie) take turns.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"handover:{run_id}",))
        run = conn.execute("SELECT crosswalk_version, code_version FROM ops.runs WHERE run_id = %s", (run_id,)).fetchone()
        crosswalk_version = run[0] if run and run[0] else conn.execute(
            "SELECT version FROM registry.reference_versions ORDER BY published_at DESC LIMIT 1").fetchone()[0]
        code_version = run[1] if run and run[1] else sapnhap.__version__
        rows = conn.execute(
            """SELECT b.source_id, b.dataset, b.manifest_key, b.extracted, b.quarantined,
                      b.inserted + b.updated + b.unchanged, b.merged_in_batch + b.merged_cross_source,
                      b.status IN ('loaded', 'blocked'), b.merged_cross_source,
                      -- every attempt of the batch whose load committed, in commit order
                      (SELECT array_agg(l.manifest_key ORDER BY l.loaded_at, l.manifest_key)
                         FROM ops.loaded_backups l WHERE l.batch_id = b.batch_id)
               FROM ops.batches b WHERE b.run_id = %s""",
            (run_id,),
        ).fetchall()
        batches = {(r[0], r[1]): (r[2], r[3], r[4], r[5], r[6], r[8], r[9] or ([r[2]] if r[2] and r[7] else []))
                   for r in rows}
        committed = {r[0] for r in rows if r[7]}
        skipped = sorted(s.id for s in sources if s.id not in committed)
        if skipped:
            log.info("run %s: no committed batch of %s: no handover record for them", run_id, ", ".join(skipped))
        sources = [s for s in sources if s.id in committed]
        names, crosswalk = _unit_names(conn, crosswalk_version, sorted({d for s in sources for d in s.old_units.districts}))
        records: list[HandoverRecord] = []
        for source in sources:
            records += _source_records(services, conn, source, run_id, batches, names, crosswalk,
                                       crosswalk_version, code_version)
        records = _one_per_unit(records)
        out = []
        written = 0
        for record in records:
            datasets = [asdict(line) for line in record.lines]
            content = (run_id, record.old_unit_code, record.old_unit_level, record.old_unit_name,
                       [s["id"] for s in record.sources], [u["code"] for u in record.new_units], crosswalk_version,
                       json.dumps(datasets, ensure_ascii=False))
            stored_before = conn.execute(
                """SELECT object_key, sha256 FROM ops.handover_records
                   WHERE run_id = %s AND old_unit_code = %s AND old_unit_level = %s
                     AND old_unit_name IS NOT DISTINCT FROM %s AND source_ids = %s AND new_unit_codes = %s
                     AND crosswalk_version IS NOT DISTINCT FROM %s AND datasets = %s::jsonb""",
                content,
            ).fetchone()
            if stored_before is not None:
                record.object_key, record.sha256 = stored_before
            else:
                html = render_handover_html(record, created_at=created_at)
                key = f"handover/{storage.safe_run_id(run_id)}/{record.old_unit_code}.html"
                stored = storage.put_bytes(services.s3, key, html.encode("utf-8"), "text/html; charset=utf-8")
                record.object_key, record.sha256 = stored.key, stored.sha256
                # Append-only for the loader: an open run's records are written again only through
                # this function (migration 0003), never by UPDATE.
                conn.execute(
                    "SELECT ops.record_handover(%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
                    (*content, record.object_key, record.sha256),
                )
                written += 1
            out.append({"run_id": run_id, "old_unit_code": record.old_unit_code, "old_unit_level": record.old_unit_level,
                        "object_key": record.object_key, "sha256": record.sha256, "datasets": len(datasets)})
    log.info("run %s: %d handover records (%d new or changed) under handover/%s/", run_id, len(out), written,
             storage.safe_run_id(run_id))
    return out


def _one_per_unit(records: list[HandoverRecord]) -> list[HandoverRecord]:
    """One record per old unit: sources serving the same unit are listed together, not in turn overwritten."""
    by_unit: dict[str, HandoverRecord] = {}
    for record in records:
        first = by_unit.setdefault(record.old_unit_code, record)
        if first is record:
            continue
        # New lists: a source's district records share their lines list.
        first.sources = [*first.sources, *(s for s in record.sources if s not in first.sources)]
        first.lines = [*first.lines, *record.lines]
        first.new_units = [*first.new_units, *(u for u in record.new_units if u not in first.new_units)]
    return list(by_unit.values())


def _source_records(services: Services, conn: psycopg.Connection, source: Source, run_id: str, batches: dict,
                    names: dict, crosswalk: pd.DataFrame, crosswalk_version: str,
                    code_version: str) -> list[HandoverRecord]:
    def province_name(district: str | None) -> str:
        # A system may serve several old provinces: each district names its own.
        code = names.get(("district", district), (None, None))[1] or source.old_units.province
        return names.get(("province", code), (code, None))[0]

    communes = list(source.old_units.communes) or sorted(
        code for (level, code), (_, parent) in names.items() if level == "commune" and parent in source.old_units.districts
    )
    if not any(get_dataset(d).has_unit for d in source.datasets):
        # A system whose records name no commune (documents: agencies): its district record holds it all.
        communes = []
    src = {"id": source.id, "name": source.name, "owner": source.system_owner_vi}
    run_counts: dict[str, pd.DataFrame] = {}
    holdings: dict[str, pd.DataFrame] = {}
    district_lines: list[DatasetLine] = []
    manifests: dict[str, bytes] = {}  # each manifest downloaded once: its checksum, body and attempts

    def manifest_bytes(key: str) -> bytes:
        if key not in manifests:
            manifests[key] = storage.get_bytes(services.s3, key)
        return manifests[key]

    for dataset in source.datasets:
        ds = get_dataset(dataset)
        batch = batches.get((source.id, dataset))
        manifest_key = batch[0] if batch else None
        manifest = json.loads(manifest_bytes(manifest_key)) if manifest_key else None
        manifest_sha = storage.sha256_bytes(manifest_bytes(manifest_key)) if manifest_key else None
        total = DatasetLine(dataset, ds.title_vi, source.id, manifest_key=manifest_key, manifest_sha256=manifest_sha,
                            valid_sha256=manifest["objects"]["valid"]["sha256"] if manifest else None)
        entries = _night_outcomes(services, [json.loads(manifest_bytes(k)) for k in batch[6]]) if batch else None
        if entries is not None and batch[6]:
            # Every attempt that loaded; rows merged into another source's record are merged, not loaded.
            night = _counts(entries)
            total.extracted, total.quarantined = night["extracted"], night["quarantined"]
            total.loaded, total.merged = night["loaded"] - batch[5], night["merged"] + batch[5]
        elif batch:
            total.extracted, total.quarantined, total.loaded, total.merged = batch[1], batch[2], batch[3], batch[4]
        if ds.has_unit:
            held = _core_holdings(conn, dataset, source.id)
            holdings[dataset] = held
            total.held_total = int(held["held"].sum())
            total.held_by_new_unit = {str(k): int(v) for k, v in held.groupby("new_commune_code")["held"].sum().items()}
            total.checksum = conn.execute(
                f"SELECT md5(string_agg(source_key || ':' || record_hash, ',' ORDER BY source_key)) "
                f"FROM core.{dataset} WHERE source_id = %s", (source.id,),  # noqa: S608 - dataset from the registry
            ).fetchone()[0] or ""
            if entries is not None:
                run_counts[dataset] = _per_commune_run_counts(entries)
        else:
            total.held_total = conn.execute(
                f"SELECT count(*) FROM core.{dataset} WHERE source_id = %s", (source.id,)  # noqa: S608
            ).fetchone()[0]
        district_lines.append(total)

    records = []
    for district in source.old_units.districts:
        dname, _ = names.get(("district", district), (district, None))
        new_units = crosswalk[crosswalk["old_district_code"] == district][["new_commune_code", "new_commune_name"]]
        records.append(HandoverRecord(
            run_id, district, "district", dname, "", province_name(district),
            [{"code": c, "name": n} for c, n in new_units.drop_duplicates().itertuples(index=False)],
            [src], district_lines, crosswalk_version, code_version,
        ))
    for commune in communes:
        cname, parent = names.get(("commune", commune), (commune, None))
        targets = crosswalk[crosswalk["old_commune_code"] == commune]
        lines = []
        for total in district_lines:
            ds = get_dataset(total.dataset)
            if not ds.has_unit:
                continue
            line = DatasetLine(total.dataset, total.title_vi, source.id, manifest_key=total.manifest_key,
                               manifest_sha256=total.manifest_sha256, valid_sha256=total.valid_sha256)
            counts = run_counts.get(total.dataset)
            if counts is not None and commune in counts.index:
                row = counts.loc[commune]
                line.extracted, line.loaded = int(row["extracted"]), int(row["loaded"])
                line.quarantined, line.merged = int(row["quarantined"]), int(row["merged"])
            held = holdings[total.dataset]
            held = held[held["old_commune_code"] == commune]
            line.held_by_new_unit = {str(r.new_commune_code): int(r.held) for r in held.itertuples(index=False)}
            line.held_total = int(held["held"].sum())
            if line.held_total:
                line.checksum = storage.sha256_bytes(",".join(sorted(held["checksum"].astype(str))).encode())[:32]
            lines.append(line)
        records.append(HandoverRecord(
            run_id, commune, "commune", cname, names.get(("district", parent), (parent or "", None))[0],
            province_name(parent),
            [{"code": r.new_commune_code, "name": r.new_commune_name, "split": bool(r.is_split)}
             for r in targets.itertuples(index=False)],
            [src], lines, crosswalk_version, code_version,
        ))
    return records
