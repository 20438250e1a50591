"""The demo's document systems through the whole spine, on real services (R16).

One system per old district (two PostgreSQL systems in UTF-8, a SQLite register in TCVN3, an
Access file), each with its processing history and a folder of attached files: after extract -> transform -> validate -> backup -> load, every
document and every step is loaded, quarantined with a reason or merged; the processing history
is complete in ``core.document_steps``, in time order, with each unit re-mapped to the new
structure; every attached file is in the bucket under its sha256 and linked from its document,
and a file that cannot be read is a quarantine row naming the file and the document's key.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sapnhap import storage
from sapnhap.agencies import remap_agencies
from sapnhap.airflow_support import process_batch
from sapnhap.documents import account_for_attachments, load_agencies
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync import extract_stage, prepare_run
from sapnhap_dev.demo.documents import DOCUMENT_SOURCE_IDS
from sapnhap_dev.runner import account_for

pytestmark = pytest.mark.integration


@pytest.fixture
def synced(tmp_path: Path, pg_admin_dsn: str, services: Services, monkeypatch: pytest.MonkeyPatch):
    """A demo world whose document systems went through one nightly run of the spine."""
    from sapnhap_dev.demo.generator import generate_world

    world = generate_world(tmp_path / "world", seed=11, size=24, pg_dsn=pg_admin_dsn,
                           db_prefix=f"doc{uuid.uuid4().hex[:6]}")
    try:
        for conn_id, value in world.connections.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
        prepare_run(services, "r1")
        results = {}
        for source_id in DOCUMENT_SOURCE_IDS:
            source = get_source(source_id)
            for dataset in ("documents", "document_steps"):
                batch = extract_stage(services, source, dataset, world.connections[source.conn_id], run_id="r1",
                                      run_date="2025-12-01")
                results[(source_id, dataset)] = process_batch(services, source, batch)
        yield world, results
    finally:
        world.drop_databases()


def _core(dsn: str, sql: str, *params) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def test_every_document_and_step_is_accounted_for(synced, services: Services) -> None:
    world, results = synced
    ledger = world.ledger[world.ledger["source_id"].isin(DOCUMENT_SOURCE_IDS)]
    assert set(ledger["dataset"]) == {"documents", "document_steps"}
    outcome = account_for(services.platform_dsn, ledger)
    assert (outcome["outcome"] != "missing").all(), outcome[outcome["outcome"] == "missing"]
    for (_, _), counts in results.items():
        assert counts["extracted"] == counts["inserted"] + counts["quarantined"] + counts["merged_in_batch"] + \
            counts["merged_cross_source"] + counts["blocked"]
    # Every defect of the documents keeps its record out of core, with the reason of its own check.
    docs = outcome[outcome["dataset"] == "documents"].merge(ledger, on=["source_id", "dataset", "source_key"])
    assert (docs.loc[docs["defect"].notna(), "outcome"] == "quarantined").all()
    assert (docs.loc[docs["defect"].isna(), "outcome"] == "loaded").all()
    checks = _core(services.platform_dsn, "SELECT source_key, expectation FROM ops.quarantine WHERE dataset = 'documents'")
    by_defect = docs[docs["defect"].notna()].merge(checks, on="source_key").groupby("defect")["expectation"].agg(set)
    assert "unique.number_per_issuer_year" in by_defect["duplicate_number"]
    assert "order.received_date" in by_defect["received_before_issued"]
    assert "agency.own_unit" in by_defect["unknown_agency"]
    assert "attachment.readable" in by_defect["attachment_missing"]
    assert "parse.issued_date" in by_defect["bad_date"]


def test_processing_history_is_complete_in_time_order_with_units_remapped(synced, services: Services) -> None:
    world, _ = synced
    truth = world.document_systems.steps
    core = _core(services.platform_dsn, """SELECT source_id, document_code, step_no, unit_code, unit_new_agency_code,
                                                  unit_agency_status, acted_at FROM core.document_steps""")
    crosswalk, _ = load_agencies()
    expected = remap_agencies(truth.rename(columns={"acted_at": "when"}), crosswalk, code_col="unit_code",
                              date_col="when", prefix="unit")
    clean = expected[expected["_defect"].isna()]
    merged = clean.merge(core, on=["source_id", "document_code", "step_no"], how="left", suffixes=("", "_core"),
                         indicator=True)
    # Every step of every document of every old system is in core.document_steps...
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][["source_id", "document_code", "step_no"]]
    assert len(clean) > 0 and set(clean["source_id"]) == set(DOCUMENT_SOURCE_IDS)
    # ...at its time, its old unit kept beside the unit of the new structure in force then.
    assert (pd.to_datetime(merged["acted_at"]) == pd.to_datetime(merged["when"])).all()
    assert (merged["unit_code_core"] == merged["unit_code"]).all()
    assert (merged["unit_new_agency_code_core"] == merged["unit_new_agency_code"]).all()
    assert merged["unit_new_agency_code_core"].notna().all() and (merged["unit_agency_status"] == "mapped").all()
    # A district office's steps after its abolition go to the province's archives, before it to the commune.
    vp = merged[merged["unit_code"].str.endswith(".VP")]
    after = pd.to_datetime(vp["when"]) >= pd.Timestamp("2025-07-01")
    assert (vp.loc[after, "unit_new_agency_code_core"] == "N08.SNV").all() and after.any() and (~after).any()
    # In time order, document by document.
    ordered = core.sort_values(["source_id", "document_code", "step_no"])
    backwards = ordered.groupby(["source_id", "document_code"])["acted_at"].diff() < pd.Timedelta(0)
    assert not backwards.any()
    # A step entered with a wrong clock waits in quarantine with its reason, never silently reordered.
    wrong = expected[expected["_defect"] == "steps_out_of_order"]
    assert len(wrong)
    keys = set(wrong["document_code"] + "|" + wrong["step_no"].astype(str))
    q = _core(services.platform_dsn, """SELECT source_key FROM ops.quarantine WHERE dataset = 'document_steps'
                                        AND expectation = 'order.step_acted_at' AND status = 'open'""")
    assert keys <= set(q["source_key"])
    # Looked up as the province sees it: a document's history through the platform's function.
    code = clean["document_code"].iloc[0]
    history = _core(services.platform_dsn, "SELECT step_no, acted_at FROM core.find_document_steps(%s)", code)
    assert history["acted_at"].is_monotonic_increasing and len(history) >= 1


def test_attachments_are_in_the_bucket_by_sha256_and_linked_or_quarantined_by_file(synced, services: Services) -> None:
    world, _ = synced
    files = world.document_systems.attachments
    docs = _core(services.platform_dsn, "SELECT source_id, document_code, attachment_paths, attachments FROM core.documents")
    linked = [
        {"source_id": r.source_id, "document_code": r.document_code, **link}
        for r in docs.itertuples(index=False) if isinstance(r.attachments, str) for link in json.loads(r.attachments)
    ]
    linked = pd.DataFrame(linked)
    loaded = files.merge(docs[["source_id", "document_code"]], on=["source_id", "document_code"])
    assert len(loaded) > 0
    both = loaded.merge(linked, on=["source_id", "document_code", "path"], how="left", suffixes=("", "_link"))
    assert (both["sha256_link"] == both["sha256"]).all()
    for key, sha, size in zip(both["key"], both["sha256"], both["bytes"], strict=True):
        assert key.endswith(sha)
        storage.verify_object(services.s3, {"key": key, "sha256": sha, "size": int(size)})
    # Files of documents that wait in quarantine are kept in the bucket too: nothing is lost.
    waiting = files[~files.set_index(["source_id", "document_code"]).index.isin(
        docs.set_index(["source_id", "document_code"]).index)]
    for source_id, sha in zip(waiting["source_id"], waiting["sha256"], strict=True):
        assert storage.exists(services.s3, f"attachments/{source_id}/{sha[:2]}/{sha}")
    # What `make demo` checks: every file the legacy systems hold is in the bucket.
    assert account_for_attachments(services.s3, files) == {
        "stored": len(set(zip(files["source_id"], files["sha256"], strict=True))), "missing": 0}
    missing = world.ledger[world.ledger["defect"] == "attachment_missing"]
    q = _core(services.platform_dsn, """SELECT source_key, column_name, value_masked, reason_vi FROM ops.quarantine
                                        WHERE expectation = 'attachment.readable' AND status = 'open'""")
    assert set(missing["source_key"]) <= set(q["source_key"])
    for row in q.itertuples(index=False):
        assert row.column_name == "attachment_paths"
        assert row.value_masked in row.reason_vi and row.source_key in row.reason_vi


def test_tcvn3_register_is_decoded_and_looked_up_by_old_and_new_agency(synced, services: Services) -> None:
    world, _ = synced
    truth = world.document_systems.documents
    sd = truth[(truth["source_id"] == "tq_sonduong_vanban") & truth["_defect"].isna()]
    core = _core(services.platform_dsn, """SELECT document_code, summary, issuer_name, signer FROM core.documents
                                           WHERE source_id = 'tq_sonduong_vanban'""").set_index("document_code")
    got = core.loc[sd["document_code"]]
    assert got["summary"].tolist() == sd["summary"].tolist()  # "Về việc ..." from TCVN3 bytes
    assert got["issuer_name"].tolist() == sd["issuer_name"].tolist()
    batch = _core(services.platform_dsn, """SELECT text_repaired FROM ops.batches
                                            WHERE source_id = 'tq_sonduong_vanban' AND dataset = 'documents'""")
    assert batch["text_repaired"].iloc[0] >= len(sd)
    # The district office of Sơn Dương: its documents are found by its old code and under its successors
    # (the commune at the district seat until 01/07/2025, the province's archives after).
    old = _core(services.platform_dsn, "SELECT document_code FROM core.find_documents_by_old_agency('08.076.VP')")
    successors = pd.concat([_core(services.platform_dsn, "SELECT document_code FROM core.find_documents_by_new_agency(%s)",
                                  code) for code in ("N08.02536.UBND", "N08.SNV")])
    mine = sd[(sd["issuer_code"] == "08.076.VP") | (sd["receiver_code"] == "08.076.VP")]
    assert len(mine) and set(old["document_code"]) == set(mine["document_code"])
    assert set(old["document_code"]) <= set(successors["document_code"])


def test_each_old_district_gets_a_handover_record_of_its_documents(synced, services: Services) -> None:
    from sapnhap.handover import build_handover

    sources = [get_source(s) for s in DOCUMENT_SOURCE_IDS]
    records = build_handover(services, "r1", sources=sources)
    # One record per old district: documents name agencies, not communes.
    assert sorted((r["old_unit_code"], r["old_unit_level"]) for r in records) == [
        ("030", "district"), ("034", "district"), ("075", "district"), ("076", "district")]
    rows = _core(services.platform_dsn, "SELECT old_unit_code, datasets FROM ops.handover_records WHERE run_id = 'r1'")
    held = _core(services.platform_dsn, "SELECT source_id, count(*) AS n FROM core.documents GROUP BY 1").set_index("source_id")["n"]
    for row in rows.itertuples(index=False):
        lines = {d["dataset"]: d for d in row.datasets}
        assert set(lines) == {"documents", "document_steps"}
        doc = lines["documents"]
        assert doc["held_total"] == held[doc["source_id"]] > 0
        assert doc["extracted"] == doc["loaded"] + doc["quarantined"] + doc["merged"] and doc["manifest_key"]


def test_one_document_system_per_old_district_including_an_access_file(synced, services: Services) -> None:
    world, results = synced
    sources = {s: get_source(s) for s in DOCUMENT_SOURCE_IDS}
    # The four old districts of the demo world, each with its own document system.
    assert sorted(d for s in sources.values() for d in s.old_units.districts) == ["030", "034", "075", "076"]
    assert {s.kind for s in sources.values()} == {"postgres", "sqlite", "access"}
    access = next(s for s in sources.values() if s.kind == "access")
    assert world.connections[access.conn_id] and access.datasets["documents"].table == "Văn bản"
    # The Access register: Vietnamese text intact, its history and its attachments through the same spine.
    truth = world.document_systems.documents
    mine = truth[(truth["source_id"] == access.id) & truth["_defect"].isna()]
    core = _core(services.platform_dsn, "SELECT document_code, summary, issuer_name, signer, issued_date "
                                        "FROM core.documents WHERE source_id = %s", access.id).set_index("document_code")
    got = core.loc[mine["document_code"]]
    assert len(mine) > 0
    assert got["summary"].tolist() == mine["summary"].tolist()
    assert got["signer"].tolist() == mine["signer"].tolist()
    assert (pd.to_datetime(got["issued_date"]).to_numpy() == pd.to_datetime(mine["issued_date"]).to_numpy()).all()
    steps = _core(services.platform_dsn, "SELECT count(*) AS n FROM core.document_steps WHERE source_id = %s", access.id)
    assert steps["n"].iloc[0] > 0
    assert results[(access.id, "document_steps")]["inserted"] > 0
    linked = _core(services.platform_dsn, "SELECT count(*) AS n FROM core.documents WHERE source_id = %s "
                                          "AND attachments IS NOT NULL", access.id)
    assert linked["n"].iloc[0] > 0
