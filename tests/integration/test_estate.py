"""The demo's reporting tools and portals through the whole spine, and the province's outputs from the platform.

Four district reporting tools (file exports, Bắc Quang's in VNI bytes) and four portals' page
lists are legacy sources like the others: after extract -> transform -> validate -> backup ->
load every record is loaded or quarantined with the reason of its own check, every batch
reconciles, the owners' report and the handover records name them, and the old values and pages
are found by old unit. The indicators per new unit and the redirect map are built from
``core.indicator_values`` and ``core.portal_pages`` (never from the files) and obey the
arithmetic of ``tests/unit/test_indicators.py`` and the one-live-URL rule of ``test_portal.py``.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import date
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sapnhap import storage
from sapnhap.airflow_support import process_batch
from sapnhap.indicators.publish import publish_indicators
from sapnhap.portal import normalize_url, publish_redirects
from sapnhap.reference import load_reference
from sapnhap.services import Services
from sapnhap.sources import get_source
from sapnhap.sync import extract_stage, prepare_run
from sapnhap_dev.demo.estate import (
    ESTATE_SOURCE_IDS,
    UNWEIGHTED_SPLIT,
    WEIGHTED_SPLIT,
    estate_night,
)
from sapnhap_dev.runner import account_for

pytestmark = pytest.mark.integration

DATASET_OF = {s: ("indicator_values" if s.endswith("_baocao") else "portal_pages") for s in ESTATE_SOURCE_IDS}
EXPECTED_CHECK = {
    "unknown_indicator": "catalogue.indicator_code",
    "bad_period": "format.period",
    "negative_value": "range.value",
    "ratio_mismatch": "ratio.consistent",
    "malformed_url": "format.url",
    "implausible_date": "plausible.published_date",
}


def _night(services: Services, world, run_id: str, run_date: str) -> dict:  # noqa: ANN001 - World
    from sapnhap.sync.reconcile import reconcile_run

    prepare_run(services, run_id)
    results = {}
    for source_id, dataset in DATASET_OF.items():
        source = get_source(source_id)
        batch = extract_stage(services, source, dataset, world.connections[source.conn_id], run_id=run_id,
                              run_date=run_date)
        results[source_id] = process_batch(services, source, batch)
    results["reconciliation"] = reconcile_run(services, run_id, list(DATASET_OF.items()))
    return results


@pytest.fixture
def synced(tmp_path: Path, pg_admin_dsn: str, services: Services, monkeypatch: pytest.MonkeyPatch):
    """A demo world whose reporting tools and portals went through one nightly run of the spine."""
    from sapnhap_dev.demo.generator import generate_world

    world = generate_world(tmp_path / "world", seed=13, size=12, pg_dsn=pg_admin_dsn,
                           db_prefix=f"est{uuid.uuid4().hex[:6]}")
    try:
        for conn_id, value in world.connections.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
        yield world, _night(services, world, "r1", "2025-12-01")
    finally:
        world.drop_databases()


def _core(dsn: str, sql: str, *params) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def test_every_value_and_page_is_accounted_for_reported_and_handed_over(synced, services: Services, smtp_sink) -> None:
    from sapnhap.handover import build_handover
    from sapnhap.reports import send_run_reports
    from sapnhap_dev.embedded import read_mail

    world, results = synced
    ledger = world.ledger[world.ledger["source_id"].isin(ESTATE_SOURCE_IDS)]
    assert set(ledger["source_id"]) == set(ESTATE_SOURCE_IDS)
    outcome = account_for(services.platform_dsn, ledger).merge(ledger, on=["source_id", "dataset", "source_key"])
    assert (outcome["outcome"] != "missing").all(), outcome[outcome["outcome"] == "missing"]
    assert (outcome.loc[outcome["defect"].isna(), "outcome"] == "loaded").all()
    assert (outcome.loc[outcome["defect"].notna(), "outcome"] == "quarantined").all()
    # Each defect is held back by its own check, with a Vietnamese reason for the owner.
    q = _core(services.platform_dsn, "SELECT source_id, source_key, expectation, reason_vi FROM ops.quarantine")
    held = outcome[outcome["defect"].notna()].merge(q, on=["source_id", "source_key"])
    assert set(held["defect"]) == set(EXPECTED_CHECK)
    for defect, check in EXPECTED_CHECK.items():
        assert check in set(held.loc[held["defect"] == defect, "expectation"]), defect
    # Split communes are not defects here: their values and pages load under the old commune,
    # and nothing waits in the review queue for them (the outputs allocate them).
    split = outcome[outcome["old_commune_code"].isin([WEIGHTED_SPLIT, UNWEIGHTED_SPLIT]) & outcome["defect"].isna()]
    assert len(split) and (split["outcome"] == "loaded").all()
    review = _core(services.platform_dsn, "SELECT count(*) AS n FROM registry.review_queue WHERE dataset = ANY(%s)",
                   ["indicator_values", "portal_pages"])
    assert review["n"].iloc[0] == 0
    # Every batch reconciles: extracted = loaded + quarantined + merged + blocked.
    recon = results["reconciliation"]
    assert len(recon) == len(ESTATE_SOURCE_IDS) and recon["ok"].all()
    # Bắc Quang's VNI export is read as Vietnamese: its period typed by hand is quoted back decoded.
    bq = held[held["source_id"] == "hg_bacquang_baocao"]
    assert bq["source_key"].str.contains("Quý").any()

    sources = [get_source(s) for s in ESTATE_SOURCE_IDS]
    send_run_reports(services, "r1", sources)
    mails = {m["To"]: m.get_body(("plain",)).get_content() for m in read_mail(smtp_sink[1])}
    for source in sources:
        plain = mails[source.owners[0]]
        assert source.name in plain and DATASET_OF[source.id] in plain
    assert "Kỳ báo cáo không đúng định dạng" in mails[get_source("hg_bacquang_baocao").owners[0]]

    build_handover(services, "r1", sources=sources)
    records = _core(services.platform_dsn, "SELECT old_unit_code, datasets FROM ops.handover_records WHERE run_id = 'r1'")
    lines = [(r.old_unit_code, line["dataset"], line) for r in records.itertuples() for line in r.datasets]
    communes = {code for code, dataset, _ in lines if dataset == "indicator_values" and len(code) == 5}
    assert {WEIGHTED_SPLIT, UNWEIGHTED_SPLIT} <= communes
    assert communes == set(ledger.loc[ledger["dataset"] == "indicator_values", "old_commune_code"])
    assert {code for code, dataset, _ in lines if dataset == "portal_pages" and len(code) == 5} == \
        set(ledger.loc[ledger["dataset"] == "portal_pages", "old_commune_code"])


def _published(services: Services, objects: dict, name: str) -> pd.DataFrame:
    data = storage.get_bytes(services.s3, objects[name]["key"], objects[name]["sha256"])
    return pd.read_csv(io.BytesIO(data), dtype={"new_commune_code": str, "new_province_code": str, "old_commune_code": str})


def _truth(world, period: str, code: str) -> pd.Series:  # noqa: ANN001 - World
    """The clean values the reporting tools hold now, by old commune."""
    v = world.estate_systems.values
    v = v[v["_defect"].isna() & (v["period"] == period) & (v["indicator_code"] == code)]
    return v.set_index("old_commune_code")["value"].astype(float)


def test_indicators_and_redirects_are_built_from_the_platform(synced, services: Services) -> None:
    world, _ = synced
    out = publish_indicators(services, as_of=date(2025, 12, 1))
    assert out["periods"] == ["2025-Q1", "2025-Q2"]
    assert sorted(out["objects"]) == ["indicators_2025-Q1.csv", "indicators_2025-Q1.json",
                                      "indicators_2025-Q2.csv", "indicators_2025-Q2.json"]
    assert all(o["key"].startswith("exports/indicators/2025-12-01/") for o in out["objects"].values())
    result = _published(services, out["objects"], "indicators_2025-Q2.csv")
    ref = load_reference()
    pairs = ref.crosswalk.loc[ref.crosswalk["old_unit_level"] == "commune", ["old_commune_code", "new_commune_code"]]
    pop = _truth(world, "2025-Q2", "DS_TONG")
    communes = result[(result["indicator_code"] == "DS_TONG") & (result["level"] == "commune")].set_index("new_commune_code")
    # A merged commune is the sum of its old communes; the weighted split adds its declared share.
    weights = pd.read_csv(Path(__file__).parents[2] / "include/sapnhap/indicators/weights/weights_08.csv", dtype=str)
    share = weights.set_index("new_commune_code")["weight"].astype(float)
    for new in pairs.loc[pairs["old_commune_code"] == WEIGHTED_SPLIT, "new_commune_code"]:
        olds = pairs.loc[pairs["new_commune_code"] == new, "old_commune_code"]
        expected = sum(pop[o] * (share[new] if o == WEIGHTED_SPLIT else 1.0) for o in olds if o in pop.index)
        assert communes.loc[new, "status"] == "ok" and abs(communes.loc[new, "value"] - expected) < 1e-6
        assert WEIGHTED_SPLIT in communes.loc[new, "composition"] and ref.version in communes.loc[new, "composition"]
    # The split commune without weights is never guessed.
    for new in pairs.loc[pairs["old_commune_code"] == UNWEIGHTED_SPLIT, "new_commune_code"]:
        assert communes.loc[new, "status"] == "cannot_allocate" and pd.isna(communes.loc[new, "value"])
    # The province total counts every old commune whole; the ratio is recomputed from its parts.
    province = result[result["level"] == "province"].set_index("indicator_code")
    assert abs(province.loc["DS_TONG", "value"] - pop.sum()) < 1e-6
    assert abs(province.loc["TL_DUNG_HAN", "value"]
               - 100 * province.loc["HS_DUNG_HAN", "value"] / province.loc["HS_TIEP_NHAN", "value"]) < 1e-9
    records = json.loads(storage.get_bytes(services.s3, out["objects"]["indicators_2025-Q2.json"]["key"]))
    assert len(records) == len(result) and all(r["composition"]["crosswalk_version"] == ref.version
                                               for r in records if "crosswalk_version" in r["composition"])

    portal = publish_redirects(services, as_of=date(2025, 12, 1))
    redirects = _published(services, portal["objects"], "redirects.csv")
    loaded = _core(services.platform_dsn, "SELECT url FROM core.portal_pages")
    # Every loaded old URL redirects once; the quarantined malformed one is not invented a target.
    assert sorted(redirects["old_url"]) == sorted(loaded["url"].map(normalize_url)) and redirects["old_url"].is_unique
    assert not set(redirects["old_url"]) & set(redirects["new_url"])
    assert redirects["new_url"].str.startswith("https://").all()
    archive = redirects[redirects["old_commune_code"].isin([WEIGHTED_SPLIT, UNWEIGHTED_SPLIT])]
    assert len(archive) and archive["new_commune_code"].isna().all() and portal["to_province_archive"] == len(archive)
    nginx = storage.get_bytes(services.s3, portal["objects"]["redirects.map"]["key"]).decode()
    assert nginx.count('" "https://') == len(redirects)


def test_a_later_night_revises_values_and_adds_pages(synced, services: Services) -> None:
    world, _ = synced
    before = publish_indicators(services, as_of=date(2025, 12, 1))
    old_total = _published(services, before["objects"], "indicators_2025-Q2.csv")
    changes = estate_night(world)
    results = _night(services, world, "r2", "2025-12-02")
    assert results["reconciliation"]["ok"].all()
    revised = changes[changes["dataset"] == "indicator_values"]
    added = changes[changes["dataset"] == "portal_pages"]
    for source_id in ESTATE_SOURCE_IDS:
        counts = results[source_id]
        mine = changes[changes["source_id"] == source_id]
        if DATASET_OF[source_id] == "indicator_values":
            # Only the new export is read: the revised values update, nothing else is touched.
            assert (counts["extracted"], counts["updated"], counts["inserted"]) == (len(mine), len(mine), 0)
        else:
            assert (counts["extracted"], counts["inserted"]) == (len(mine), len(mine))
    now = _core(services.platform_dsn, "SELECT source_key, value FROM core.indicator_values WHERE source_key = ANY(%s)",
                list(revised["source_key"]))
    assert dict(zip(now["source_key"], now["value"], strict=True)) == dict(zip(revised["source_key"], revised["value"], strict=True))
    history = _core(services.platform_dsn, "SELECT source_key FROM history.indicator_values WHERE change = 'update'")
    assert set(history["source_key"]) == set(revised["source_key"])
    assert set(added["source_key"]) <= set(_core(services.platform_dsn, "SELECT url FROM core.portal_pages")["url"])

    after = publish_indicators(services, as_of=date(2025, 12, 2))
    new_total = _published(services, after["objects"], "indicators_2025-Q2.csv")

    def total(frame: pd.DataFrame) -> float:
        return float(frame.loc[(frame["indicator_code"] == "DS_TONG") & (frame["level"] == "province"), "value"].iloc[0])

    assert abs(total(new_total) - _truth(world, "2025-Q2", "DS_TONG").sum()) < 1e-6
    assert total(new_total) > total(old_total)
    portal = publish_redirects(services, as_of=date(2025, 12, 2))
    pages = int(_core(services.platform_dsn, "SELECT count(*) AS n FROM core.portal_pages")["n"].iloc[0])
    assert portal["old_urls"] == pages
    assert set(added["source_key"].map(normalize_url)) <= set(_published(services, portal["objects"], "redirects.csv")["old_url"])


def test_old_values_and_pages_are_found_by_old_unit(synced, services: Services) -> None:
    world, _ = synced
    values = _core(services.platform_dsn, "SELECT * FROM core.find_indicator_values_by_old_unit(%s)", UNWEIGHTED_SPLIT)
    truth = world.estate_systems.values
    mine = truth[(truth["old_commune_code"] == UNWEIGHTED_SPLIT) & truth["_defect"].isna()]
    assert len(mine) and sorted(values["indicator_code"] + "|" + values["period"]) == sorted(
        mine["indicator_code"] + "|" + mine["period"])
    by_district = _core(services.platform_dsn, "SELECT DISTINCT old_commune_code FROM core.find_indicator_values_by_old_unit('034')")
    assert len(by_district) > 1
    pages = _core(services.platform_dsn, "SELECT url, title FROM core.find_portal_pages_by_old_unit_name(%s)", "thai binh")
    assert len(pages) and pages["title"].str.contains("Thái Bình").all()
    # As of a date before a page existed, it is not there.
    early = _core(services.platform_dsn, "SELECT count(*) AS n FROM core.find_portal_pages_by_old_unit('02494', '2018-12-31')")
    assert early["n"].iloc[0] == 0
