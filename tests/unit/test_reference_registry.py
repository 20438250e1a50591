"""Figures of the committed reference dataset: registry counts, crosswalk, errata, versions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The package lives under include/ (Astronomer layout); make it importable without setup.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from sapnhap.reference import (
    available_versions,
    load_reference,
    load_split_rules,
    split_rules_demo_villages,
)
from sapnhap.reference.importer import load_errata


@pytest.fixture(scope="module")
def ref():
    return load_reference("nso-2025.07")


@pytest.fixture(scope="module")
def ref2026():
    return load_reference("vpd-2026.07")


def test_default_version_is_the_official_nso_table():
    assert load_reference().version == "nso-2025.07"
    assert load_reference() is load_reference()  # cached


def test_versions_have_effective_dates():
    versions = {v["version"]: v for v in available_versions()}
    assert versions["gso-2025.01"]["effective_to"] == "2025-06-30"
    assert versions["nso-2025.07"]["effective_from"] == "2025-07-01"
    assert versions["vpd-2026.07"]["effective_from"] > versions["nso-2025.07"]["effective_from"]
    with pytest.raises(KeyError):
        load_reference("gso-2025.01")  # an old-unit list, not a crosswalk


def test_old_registry_counts_as_of_2025_01_04(ref):
    gso = ref.old_units[ref.old_units["source"] == "gso-2025-01-04"]
    counts = gso["level"].value_counts()
    assert counts["province"] == 63
    assert counts["district"] == 696
    assert counts["commune"] == 10_051
    assert gso["code"].str.len().groupby(gso["level"]).unique().map(list).to_dict() == {
        "commune": [5],
        "district": [3],
        "province": [2],
    }
    assert set(ref.old_units["scheme"]) == {"old"}
    assert set(ref.old_units["valid_to"]) == {"2025-06-30"}
    # Units the NSO table names but the 2025-01-04 list lacks (created in 2025).
    added = ref.old_units[ref.old_units["source"] == "nso-2025"]
    assert sorted(added["code"]) == [
        "03980", "03983", "03984", "26929", "26953", "27076", "27226", "27232", "27367", "27373",
    ]  # fmt: skip


def test_new_registry_counts(ref, ref2026):
    for reference in (ref, ref2026):
        current = reference.current_new_units()
        counts = current["level"].value_counts()
        assert counts["province"] == 34
        assert counts["commune"] == 3_321
        communes = current[current["level"] == "commune"]
        assert (communes["unit_type"] == "Đặc khu").sum() == 13
        assert set(communes["unit_type"]) == {"Xã", "Phường", "Đặc khu"}
        assert set(current["scheme"]) == {"new"}
        assert not communes["code"].duplicated().any()


def test_crosswalk_figures_of_the_official_table(ref):
    figures = ref.provenance["figures"]
    # As measured on the raw sheet (README figures).
    assert figures["pairs_in_sheet"] == 10_565
    assert figures["distinct_old_commune_codes_in_sheet"] == 10_033
    assert figures["distinct_new_commune_codes_in_sheet"] == 3_316
    assert figures["new_codes_stored_as_numbers"] > 342  # the 342 that lost leading zeros, and more

    pairs = ref.crosswalk[ref.crosswalk["old_unit_level"] == "commune"]
    assert len(pairs) == 10_565
    assert not pairs.duplicated(["old_commune_code", "new_commune_code"]).any()
    assert pairs["new_commune_code"].nunique() == 3_316
    # Errata E1/E2 give Mỹ Hưng and Phú Thịnh their own codes: 10,033 + 2.
    assert pairs["old_commune_code"].nunique() == 10_035
    by_targets = pairs.drop_duplicates("old_commune_code")["n_targets"].value_counts().to_dict()
    # The raw sheet has 369 two-way splits; two of them (01615, 02485) were code typos (E1, E2).
    assert by_targets == {1: 9_596, 2: 367, 3: 54, 4: 17, 5: 1}
    five_way = pairs[pairs["n_targets"] == 5]["old_commune_code"].unique()
    assert list(five_way) == ["00634"]
    assert (pairs["is_split"] == (pairs["n_targets"] > 1)).all()


def test_crosswalk_raw_split_figures_before_errata(ref):
    """441 split communes with 2/3/4/5 targets = 369/54/17/1 on the sheet as published."""
    pairs = ref.crosswalk[ref.crosswalk["old_unit_level"] == "commune"].copy()
    undo = {"01651": "01615", "02482": "02485"}  # revert E1/E2 to count as the sheet does
    fixed = pairs["errata"].fillna("").str.contains("E1|E2")
    pairs.loc[fixed, "old_commune_code"] = pairs.loc[fixed, "old_commune_code"].map(undo)
    n = pairs.groupby("old_commune_code")["new_commune_code"].nunique()
    assert (n > 1).sum() == 441
    assert n.value_counts().to_dict() == {1: 9_592, 2: 369, 3: 54, 4: 17, 5: 1}


def test_every_old_province_goes_to_one_new_province(ref):
    mapping = ref.old_to_new_province
    assert len(mapping) == 63
    assert len(set(mapping.values())) == 34
    assert ref.new_province_of_old_province("02") == "08"  # Hà Giang -> Tuyên Quang
    assert ref.new_province_of_old_province("8") == "08"
    assert ref.new_province_of_old_province("82") == "82"  # Tiền Giang -> Đồng Tháp
    assert ref.new_province_of_old_province("80") == "80"  # Long An -> Tây Ninh


def test_errata_are_listed_and_applied(ref):
    errata = load_errata()
    assert [e["id"] for e in errata] == ["E1", "E2", "E3", "E8", "E4", "E5", "E6", "E7"]
    for entry in errata:
        assert entry["what"] and entry["reason"] and entry["action"]["kind"]
    applied = {e["id"]: e["rows"] for e in ref.provenance["errata_applied"]}
    assert applied == {"E1": 1, "E2": 1, "E3": 1, "E8": 1, "E4": 1, "E5": 5, "E6": 2, "E7": 3}

    cw = ref.crosswalk
    old = ref.old_units.set_index("code")
    # E1, E2: the names now carry their own codes, which the GSO list confirms.
    my_hung = cw[(cw["old_commune_name"] == "Xã Mỹ Hưng") & (cw["old_district_code"] == "049")]
    assert list(my_hung["old_commune_code"]) == ["01651"] and old.loc["01651", "name"] == "Xã Mỹ Hưng"
    assert cw.loc[cw["old_commune_code"] == "01615", "old_commune_name"].tolist() == ["Xã Hồng Quang"]
    phu_thinh = cw[(cw["old_commune_name"] == "Xã Phú Thịnh") & (cw["old_district_code"] == "075")]
    assert list(phu_thinh["old_commune_code"]) == ["02482"]
    assert cw.loc[cw["old_commune_code"] == "02485", "old_commune_name"].tolist() == ["Xã Công Đa"]
    # E3, E8: old provinces corrected.
    assert cw.loc[cw["old_commune_code"] == "27691", "old_province_code"].tolist() == ["80"]
    assert cw.loc[cw["old_commune_code"] == "30781", "old_province_code"].tolist() == ["91"]
    assert set(cw["old_province_code"][cw["new_province_code"] == "80"]) == {"72", "80"}
    # E4: kept as a single target, marked.
    dang_xa = cw[cw["old_commune_code"] == "00556"]
    assert dang_xa[["new_commune_code", "errata", "is_split"]].values.tolist() == [["00541", "E4", False]]
    # E5: island districts -> special zones.
    islands = ref.island_districts.set_index("old_district_code")["new_commune_code"].to_dict()
    assert islands == {"318": "11948", "471": "19742", "498": "20333", "536": "21548", "755": "26732"}
    zones = ref.new_units.set_index("code")
    assert all(zones.loc[c, "unit_type"] == "Đặc khu" for c in islands.values())
    # E6, E7: one spelling per new code.
    assert set(cw.loc[cw["new_commune_code"] == "24496", "new_commune_name"]) == {"Xã Ea Kly"}
    assert set(cw.loc[cw["new_commune_code"] == "05941", "new_commune_name"]) == {"Xã Điềm Thụy"}


def test_crosswalk_agrees_with_the_old_registry(ref):
    cw = ref.crosswalk[ref.crosswalk["old_unit_level"] == "commune"]
    old = ref.old_units[ref.old_units["level"] == "commune"].set_index("code")
    assert cw["old_commune_code"].isin(old.index).all()
    assert (cw["old_district_code"] == cw["old_commune_code"].map(old["parent_code"])).all()
    assert (cw["old_province_code"] == cw["old_commune_code"].map(old["province_code"])).all()
    new = ref.new_units[ref.new_units["level"] == "commune"].set_index("code")
    assert cw["new_commune_code"].isin(new.index).all()
    assert (cw["new_province_code"] == cw["new_commune_code"].map(new["province_code"])).all()


def test_notes_are_normalized(ref):
    notes = ref.crosswalk["note"].value_counts()
    assert notes["Nhập toàn bộ"] == 9_463
    assert notes["Giữ nguyên"] == 127
    assert notes["Nhập một phần diện tích, toàn bộ dân số"] == 58
    assert not ref.crosswalk["note"].str.contains("  |Nhâp", regex=True).any()
    assert (ref.crosswalk["note"] == ref.crosswalk["note"].str.strip()).all()


def test_old_and_new_26740_are_different_units(ref):
    old = ref.old_units[(ref.old_units["code"] == "26740") & (ref.old_units["level"] == "commune")]
    new = ref.new_units[(ref.new_units["code"] == "26740") & (ref.new_units["level"] == "commune")]
    assert old["name"].tolist() == ["Phường Bến Nghé"] and old["scheme"].tolist() == ["old"]
    assert new["name"].tolist() == ["Phường Sài Gòn"] and new["scheme"].tolist() == ["new"]
    assert ref.crosswalk.loc[ref.crosswalk["old_commune_code"] == "26740", "new_commune_code"].tolist() == ["26740"]


def test_2026_version_rekeys_ba_che_and_keeps_history(ref, ref2026):
    assert ref.crosswalk.loc[ref.crosswalk["new_commune_name"] == "Xã Ba Chẽ", "new_commune_code"].unique().tolist() == [
        "06970"
    ]
    assert ref2026.crosswalk.loc[
        ref2026.crosswalk["new_commune_name"] == "Xã Ba Chẽ", "new_commune_code"
    ].unique().tolist() == ["06978"]
    units = ref2026.new_units.set_index(["code", "valid_from"])
    assert units.loc[("06978", "2026-07-12"), "name"] == "Xã Ba Chẽ"
    retired = ref2026.new_units[ref2026.new_units["code"] == "06970"]
    assert retired["valid_to"].tolist() == ["2026-07-11"]
    changes = ref2026.provenance["changes_from_nso_2025"]
    assert {"old_code": "06970", "new_code": "06978"}.items() <= changes[0].items()
    assert len(ref2026.crosswalk) == len(ref.crosswalk)


def test_old_communes_helper(ref):
    communes = ref.old_communes(["02", "08"])
    assert set(communes["province_code"]) == {"02", "08"}
    assert set(communes["new_province_code"].dropna()) == {"08"}
    split = communes[communes["is_split"]]
    assert sorted(split["code"]) == ["00688", "00967", "00988", "02494", "02497"]
    assert split.set_index("code").loc["00688", "candidates"] == "00691|00694"
    assert communes.loc[~communes["is_split"], "new_commune_code"].notna().all()


def test_demo_split_rules_for_tuyen_quang(ref):
    rules = load_split_rules("08")
    assert set(rules.columns) >= {"old_commune_code", "match_kind", "pattern", "new_commune_code"}
    assert rules["demo"].all()
    assert set(rules["match_kind"]) == {"village", "street"}
    targets = ref.old_commune_targets.set_index("old_commune_code")
    for rule in rules.itertuples():
        assert targets.loc[rule.old_commune_code, "is_split"]
        assert rule.new_commune_code in targets.loc[rule.old_commune_code, "candidates"].split("|")
    # Some split communes are deliberately left without rules.
    assert {"00988", "02494"}.isdisjoint(rules["old_commune_code"])
    villages = split_rules_demo_villages("00967")
    assert villages["Thôn Nà Lừa"] == "00913"
    assert load_split_rules("99").empty


def test_committed_dataset_is_small():
    data = Path(__file__).resolve().parents[2] / "include/sapnhap/reference/data"
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    assert size < 2_000_000
