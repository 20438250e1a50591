"""Indicator arithmetic on the real crosswalk: merged, split with and without weights, ratios, non-additive."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sapnhap.indicators import IndicatorError, export_period, load_catalogue, load_weights, reaggregate
from sapnhap.reference import load_reference

REF = load_reference("nso-2025.07")
CAT = load_catalogue()
# Hà Nội: old 00001 (Phúc Xá) and 00006 (Vĩnh Phúc) merge whole into other communes; old 00007 (Cống Vị)
# splits into new 00008 and 00025.
PERIOD = "2025-Q3"


def _values(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([(code, PERIOD, old, v) for code, old, v in rows],
                        columns=["indicator_code", "period", "old_commune_code", "value"])


def _one(out: pd.DataFrame, code: str, level: str, unit: str) -> pd.Series:
    col = "new_commune_code" if level == "commune" else "new_province_code"
    hit = out[(out["indicator_code"] == code) & (out["level"] == level) & (out[col] == unit)]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def _targets(old: str) -> list[str]:
    cw = REF.crosswalk
    return sorted(cw.loc[cw["old_commune_code"] == old, "new_commune_code"])


def _sources(new: str) -> list[str]:
    cw = REF.crosswalk
    return sorted(cw.loc[cw["new_commune_code"] == new, "old_commune_code"])


def test_merged_commune_sums_every_old_commune_and_says_which():
    new = _targets("00001")[0]
    olds = _sources(new)
    assert len(olds) >= 2 and all(len(_targets(o)) == 1 for o in olds[:1])
    whole = [o for o in olds if len(_targets(o)) == 1]
    out = reaggregate(_values([("DS_TONG", o, 1000.0 + i) for i, o in enumerate(whole)]), REF, CAT)
    row = _one(out, "DS_TONG", "commune", new)
    assert row["status"] == "ok" and row["value"] == sum(1000.0 + i for i in range(len(whole)))
    comp = json.loads(row["composition"])
    assert comp["crosswalk_version"] == "nso-2025.07"
    assert sorted(p["old_commune_code"] for p in comp["parts"]) == whole


def test_split_commune_without_weights_cannot_be_allocated_but_its_province_total_can():
    out = reaggregate(_values([("DS_TONG", "00007", 9000.0)]), REF, CAT)
    for new in _targets("00007"):
        row = _one(out, "DS_TONG", "commune", new)
        assert row["status"] == "cannot_allocate" and pd.isna(row["value"])
    province = _one(out, "DS_TONG", "province", "01")
    assert province["status"] == "ok" and province["value"] == 9000.0


def test_split_commune_with_declared_weights_is_allocated_by_them(tmp_path: Path):
    a, b = _targets("00007")
    path = tmp_path / "weights_01.csv"
    path.write_text(f"old_commune_code,new_commune_code,weight,basis\n00007,{a},0.25,population\n00007,{b},0.75,population\n")
    out = reaggregate(_values([("DS_TONG", "00007", 8000.0)]), REF, CAT, load_weights(path))
    assert _one(out, "DS_TONG", "commune", a)["value"] == 2000.0
    assert _one(out, "DS_TONG", "commune", b)["value"] == 6000.0
    parts = json.loads(_one(out, "DS_TONG", "commune", b)["composition"])["parts"]
    assert [(p["old_commune_code"], p["weight"], p["basis"]) for p in parts] == [("00007", 0.75, "population")]


def test_weights_that_do_not_sum_to_one_are_refused(tmp_path: Path):
    a, b = _targets("00007")
    path = tmp_path / "w.csv"
    path.write_text(f"old_commune_code,new_commune_code,weight,basis\n00007,{a},0.5,area\n00007,{b},0.4,area\n")
    with pytest.raises(IndicatorError, match="00007 sum to 0.9000"):
        load_weights(path)


def test_ratio_is_recomputed_from_numerator_and_denominator_never_averaged():
    new = _targets("00001")[0]
    whole = [o for o in _sources(new) if len(_targets(o)) == 1][:2]
    assert len(whole) == 2
    # 90/100 = 90% and 10/50 = 20%: the average would be 55%, the true ratio is 100/150.
    values = _values([("HS_TIEP_NHAN", whole[0], 100), ("HS_DUNG_HAN", whole[0], 90),
                      ("HS_TIEP_NHAN", whole[1], 50), ("HS_DUNG_HAN", whole[1], 10)])
    out = reaggregate(values, REF, CAT)
    row = _one(out, "TL_DUNG_HAN", "commune", new)
    assert row["status"] == "ok" and row["value"] == pytest.approx(100 / 150 * 100)
    comp = json.loads(row["composition"])
    assert comp["numerator"]["value"] == 100 and comp["denominator"]["value"] == 150


def test_ratio_of_a_split_commune_without_weights_cannot_be_allocated():
    values = _values([("HS_TIEP_NHAN", "00007", 100), ("HS_DUNG_HAN", "00007", 80)])
    out = reaggregate(values, REF, CAT)
    for new in _targets("00007"):
        assert _one(out, "TL_DUNG_HAN", "commune", new)["status"] == "cannot_allocate"
    assert _one(out, "TL_DUNG_HAN", "province", "01")["value"] == pytest.approx(80.0)


def test_non_additive_is_carried_only_one_to_one():
    new = _targets("00001")[0]
    out = reaggregate(_values([("TUOI_TRUNG_VI", "00001", 33.0)]), REF, CAT)
    row = _one(out, "TUOI_TRUNG_VI", "commune", new)
    assert row["status"] == "cannot_aggregate" and pd.isna(row["value"])  # the new commune has other old parts


def test_unknown_indicator_is_a_clear_error():
    with pytest.raises(IndicatorError, match="not in the catalogue: \\['XYZ'\\]"):
        reaggregate(_values([("XYZ", "00001", 1)]), REF, CAT)


def test_export_per_period_in_open_formats(tmp_path: Path):
    out = reaggregate(_values([("DS_TONG", "00007", 9000.0)]), REF, CAT)
    csv_path, json_path = export_period(out, PERIOD, tmp_path)
    assert pd.read_csv(csv_path, dtype=str)["indicator_code"].eq("DS_TONG").all()
    records = json.loads(json_path.read_text(encoding="utf-8"))
    assert {r["status"] for r in records} == {"ok", "cannot_allocate"}
    assert all(isinstance(r["composition"], dict) for r in records)


def test_non_additive_of_a_new_commune_that_is_one_whole_old_commune_is_carried():
    assert _sources("00859") == ["00859"] and _targets("00859") == ["00859"]  # Tuyên Quang, unchanged commune
    out = reaggregate(_values([("TUOI_TRUNG_VI", "00859", 31.5)]), REF, CAT)
    row = _one(out, "TUOI_TRUNG_VI", "commune", "00859")
    assert row["status"] == "ok" and row["value"] == 31.5
