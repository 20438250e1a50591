"""Publishing the registry to the real PostgreSQL: idempotence, views, decisions, review queue."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

psycopg = pytest.importorskip("psycopg")

from sapnhap.reference import load_reference, load_split_rules  # noqa: E402
from sapnhap.reference.convert import convert_codes  # noqa: E402
from sapnhap.reference.platform import (  # noqa: E402
    enqueue_reviews,
    load_decisions,
    publish_reference,
    record_decision,
)


@pytest.fixture
def schema() -> str:
    """A schema name of its own inside the test's scratch database (dropped with it)."""
    return f"registry_test_{uuid.uuid4().hex[:10]}"


def _count(dsn: str, schema: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()[0]


def test_publish_is_idempotent_and_versions_add_rows(schema, scratch_db):
    ref = load_reference("nso-2025.07")
    first = publish_reference(scratch_db, ref, schema=schema)
    assert first["units"] == len(ref.old_units) + len(ref.new_units)
    assert first["crosswalk"] == len(ref.crosswalk)
    counts = {t: _count(scratch_db, schema, t) for t in ("units", "crosswalk", "split_rules", "reference_versions")}

    again = publish_reference(scratch_db, ref, schema=schema)
    assert again["units"] == 0 and again["crosswalk"] == 0
    assert {t: _count(scratch_db, schema, t) for t in counts} == counts

    later = load_reference("vpd-2026.07")
    added = publish_reference(scratch_db, later, schema=schema)
    assert added["units"] == len(later.new_units)  # old units of gso-2025.01 are already there
    assert added["crosswalk"] == len(later.crosswalk)
    assert _count(scratch_db, schema, "reference_versions") == 2


def test_views_answer_where_did_my_commune_go(schema, scratch_db):
    publish_reference(scratch_db, load_reference("nso-2025.07"), schema=schema)
    with psycopg.connect(scratch_db) as conn:
        row = conn.execute(
            f'SELECT old_province_name, old_district_name, old_commune_name, new_province_name, new_commune_name '
            f'FROM "{schema}".v_old_to_new WHERE old_commune_code = %s',
            ("26740",),
        ).fetchone()
        assert row == ("Thành phố Hồ Chí Minh", "Quận 1", "Phường Bến Nghé", "Thành phố Hồ Chí Minh", "Phường Sài Gòn")
        olds = conn.execute(
            f'SELECT old_commune_name FROM "{schema}".v_new_to_old WHERE new_commune_code = %s ORDER BY 1',
            ("00913",),
        ).fetchall()
        assert ("Xã Việt Lâm",) in olds
        island = conn.execute(
            f'SELECT old_district_name, new_commune_name FROM "{schema}".v_old_to_new WHERE old_district_code = %s',
            ("755",),
        ).fetchone()
        assert island == ("Huyện Côn Đảo", "Đặc khu Côn Đảo")


def test_decisions_are_validated_persisted_and_used(schema, scratch_db):
    ref = load_reference("nso-2025.07")
    publish_reference(scratch_db, ref, schema=schema, )
    records = pd.DataFrame(
        {"record_key": ["hs-1", "hs-2"], "old_commune_code": ["00988", "00988"], "address_detail": ["Thôn Khác", ""]}
    )
    converted = convert_codes(records, ref, address_detail_col="address_detail", rules=load_split_rules("08"))
    assert enqueue_reviews(scratch_db, converted, record_key_col="record_key", run_id="run-1", schema=schema,
                           source_id="src", dataset="dossiers", address_detail_col="address_detail") == 2  # fmt: skip
    assert enqueue_reviews(scratch_db, converted, record_key_col="record_key", run_id="run-2", schema=schema) == 0

    with pytest.raises(ValueError, match="not a candidate"):
        record_decision(scratch_db, "hs-1", "00988", "00004", "chuyen.vien", schema=schema)
    with pytest.raises(ValueError, match="not a split commune"):
        record_decision(scratch_db, "hs-1", "00004", "00004", "chuyen.vien", schema=schema)
    record_decision(scratch_db, "hs-1", "00988", "00700", "chuyen.vien", schema=schema)
    record_decision(scratch_db, "hs-1", "00988", "00994", "truong.phong", schema=schema)  # replaces

    decisions = load_decisions(scratch_db, schema=schema)
    assert decisions[["record_key", "new_commune_code", "decided_by"]].values.tolist() == [
        ["hs-1", "00994", "truong.phong"]
    ]
    again = convert_codes(records, ref, decisions=decisions, record_key_col="record_key")
    assert again["mapping_status"].tolist() == ["mapped", "review"]
    assert again["new_commune_code"].iloc[0] == "00994"
    with psycopg.connect(scratch_db) as conn:
        statuses = conn.execute(f'SELECT record_key, status, first_seen_run FROM "{schema}".review_queue ORDER BY 1').fetchall()
    assert statuses == [("hs-1", "decided", "run-1"), ("hs-2", "open", "run-1")]
