"""convert_codes: direct, split, rule, decision, unknown and missing codes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from sapnhap.reference import load_reference, load_split_rules
from sapnhap.reference.convert import RESULT_COLUMNS, convert_codes, encode_codes


@pytest.fixture(scope="module")
def ref():
    return load_reference("nso-2025.07")


@pytest.fixture(scope="module")
def rules():
    return load_split_rules("08")


def _one(ref, code, **kwargs):
    frame = pd.DataFrame({"old_commune_code": [code], **{k: [v] for k, v in kwargs.pop("cols", {}).items()}})
    return convert_codes(frame, ref, **kwargs).iloc[0]


def test_direct_code(ref):
    row = _one(ref, "26740")
    assert (row["new_province_code"], row["new_commune_code"]) == ("79", "26740")
    assert (row["mapping_method"], row["mapping_status"]) == ("direct", "mapped")
    assert pd.isna(row["mapping_candidates"])
    assert row["crosswalk_version"] == "nso-2025.07"


def test_codes_that_lost_leading_zeros(ref):
    frame = pd.DataFrame({"old_commune_code": [1558, 4, 26740]})
    out = convert_codes(frame, ref)
    assert out["new_commune_code"].tolist() == ["01558", "00004", "26740"]
    text = convert_codes(pd.DataFrame({"old_commune_code": ["1558", " 00004 ", 1558.0]}, dtype=object), ref)
    assert text["new_commune_code"].tolist() == ["01558", "00004", "01558"]


def test_split_commune_goes_to_review_with_candidates(ref):
    row = _one(ref, "00634")
    assert row["mapping_status"] == "review"
    assert pd.isna(row["new_commune_code"])
    assert row["mapping_method"] == "province_only" and row["new_province_code"] == "01"
    assert len(row["mapping_candidates"].split("|")) == 5


def test_unknown_and_missing_codes(ref):
    frame = pd.DataFrame(
        {
            "old_commune_code": ["99999", "abc", None, "", np.nan, "03751", None],
            "old_district_code": [None, "001", None, "075", None, None, "755"],
        }
    )
    out = convert_codes(frame, ref, old_district_col="old_district_code")
    assert out["mapping_status"].tolist() == [
        "unknown_code", "unknown_code", "missing_code", "missing_code", "missing_code", "unknown_code", "mapped",
    ]  # fmt: skip
    # The district still gives the new province; 03751 is in the old list but not the table.
    assert out["new_province_code"].tolist()[:6] == [np.nan, "01", np.nan, "08", np.nan, "14"] or out[
        "new_province_code"
    ].astype(object).where(out["new_province_code"].notna(), None).tolist()[:6] == [None, "01", None, "08", None, "14"]
    assert out["mapping_method"].astype(object).where(out["mapping_method"].notna(), None).tolist() == [
        None, "province_only", None, "province_only", None, "province_only", "direct",
    ]  # fmt: skip
    # Côn Đảo district without a commune code -> Đặc khu Côn Đảo.
    assert out["new_commune_code"].iloc[6] == "26732"
    assert out["new_commune_code"].iloc[:6].isna().all()


def test_province_column_fills_new_province(ref):
    frame = pd.DataFrame({"old_commune_code": [None, "12"], "old_province_code": ["02", 2]})
    out = convert_codes(frame, ref, old_province_col="old_province_code")
    assert out["new_province_code"].tolist() == ["08", "08"]
    assert out["mapping_status"].tolist() == ["missing_code", "unknown_code"]


def test_rules_resolve_only_matching_villages(ref, rules):
    details = [
        "Thôn Nà Lừa, xã Việt Lâm",  # rule -> 00913
        "THON NA LUA",  # accent/case-insensitive
        "Thôn Nà Lừa 2",  # a different village
        "Thôn Bản Đông",  # rule -> 00967
        "Thôn Nà Lừa và Thôn Bản Đông",  # two rules disagree: not guessed
        "Thôn Nà Pồng",  # not covered by rules
        None,
    ]
    frame = pd.DataFrame({"old_commune_code": ["00967"] * len(details), "address_detail": details})
    out = convert_codes(frame, ref, address_detail_col="address_detail", rules=rules)
    codes = out["new_commune_code"].astype(object).where(out["new_commune_code"].notna(), None).tolist()
    assert codes == ["00913", "00913", None, "00967", None, None, None]
    assert out["mapping_method"].tolist()[:4] == ["rule", "rule", "province_only", "rule"]
    assert out["mapping_status"].tolist() == ["mapped", "mapped", "review", "mapped", "review", "review", "review"]
    assert out.loc[out["mapping_status"] == "review", "mapping_candidates"].eq("00913|00967").all()


def test_rules_decomposed_unicode_and_numbers(ref, rules):
    import unicodedata

    details = [unicodedata.normalize("NFD", "tổ dân phố 3, phường Quang Trung"), "To dan pho 30", "Số 5 đường Trần Phú"]
    frame = pd.DataFrame({"old_commune_code": ["00688"] * 3, "detail": details})
    out = convert_codes(frame, ref, address_detail_col="detail", rules=rules)
    assert out["mapping_status"].tolist() == ["mapped", "review", "mapped"]
    assert out["new_commune_code"].iloc[[0, 2]].tolist() == ["00691", "00691"]


def test_decisions_resolve_reviewed_records(ref, rules):
    frame = pd.DataFrame(
        {
            "key": ["r1", "r2", "r3", "r4"],
            "old_commune_code": ["00988", "00988", "00967", "00988"],
            "detail": ["", "", "Thôn Nà Lừa", ""],
        }
    )
    decisions = pd.DataFrame(
        {
            "record_key": ["r1", "r3", "r4", "r1"],
            "old_commune_code": ["00988", "00967", "00988", "00988"],
            "new_commune_code": ["00700", "00967", "99999", "00994"],
            "decided_by": ["a", "b", "c", "d"],
            "decided_at": ["2025-08-01", "2025-08-01", "2025-08-01", "2025-09-01"],
        }
    )
    out = convert_codes(
        frame, ref, address_detail_col="detail", rules=rules, decisions=decisions, record_key_col="key"
    )
    # r1: the latest decision wins; r2: none; r3: the rule comes first; r4: invalid target ignored.
    assert out["mapping_method"].tolist() == ["decision", "province_only", "rule", "province_only"]
    assert out["new_commune_code"].iloc[0] == "00994"
    assert out["new_commune_code"].iloc[2] == "00913"
    assert out["mapping_status"].tolist() == ["mapped", "review", "mapped", "review"]


def test_no_split_record_is_assigned_without_rule_or_decision(ref, rules):
    split_codes = ref.old_commune_targets.loc[ref.old_commune_targets["is_split"], "old_commune_code"]
    frame = pd.DataFrame({"old_commune_code": split_codes.to_numpy(), "detail": "Thôn Nà Lừa"})
    out = convert_codes(frame, ref, address_detail_col="detail", rules=rules)
    resolved = out[out["new_commune_code"].notna()]
    assert (resolved["mapping_method"] == "rule").all()
    assert resolved["old_commune_code"].tolist() == ["00967"]
    assert (out["mapping_status"] == "review").sum() == len(split_codes) - 1


def test_invalid_rule_raises(ref):
    bad = pd.DataFrame(
        {"old_commune_code": ["00967"], "match_kind": ["village"], "pattern": ["Thôn X"], "new_commune_code": ["00004"]}
    )
    frame = pd.DataFrame({"old_commune_code": ["00967"], "detail": ["Thôn X"]})
    with pytest.raises(ValueError, match="not a candidate"):
        convert_codes(frame, ref, address_detail_col="detail", rules=bad)


def test_flag_old_code_after_merger(ref):
    frame = pd.DataFrame(
        {
            "old_commune_code": ["00004", "00004", None, "00004", "00004"],
            "record_date": ["30/06/2025", "01/07/2025", "15/08/2025", None, "2025-12-31"],
        }
    )
    out = convert_codes(frame, ref, record_date_col="record_date")
    assert out["flag_old_code_after_merger"].tolist() == [False, True, False, False, True]
    dated = frame.assign(record_date=pd.to_datetime(["2025-06-30", "2025-07-01", "2025-08-15", None, "2025-12-31"]))
    assert convert_codes(dated, ref, record_date_col="record_date")["flag_old_code_after_merger"].tolist() == [
        False, True, False, False, True,
    ]  # fmt: skip


def test_returns_a_copy_with_the_result_columns(ref):
    frame = pd.DataFrame({"old_commune_code": ["00004"], "x": [1]}, index=[42])
    out = convert_codes(frame, ref)
    assert list(out.columns) == ["old_commune_code", "x", *RESULT_COLUMNS]
    assert list(frame.columns) == ["old_commune_code", "x"]
    assert out.index.tolist() == [42]


def test_categorical_and_string_inputs_agree(ref):
    codes = ["00004", "00634", "99999", None, "26740"]
    plain = convert_codes(pd.DataFrame({"old_commune_code": codes}), ref)
    cat = convert_codes(pd.DataFrame({"old_commune_code": pd.Categorical(codes)}), ref)
    arrow = convert_codes(pd.DataFrame({"old_commune_code": pd.array(codes, dtype="string[pyarrow]")}), ref)
    for other in (cat, arrow):
        pd.testing.assert_frame_equal(
            plain.drop(columns="old_commune_code"), other.drop(columns="old_commune_code"), check_dtype=True
        )


def test_encode_codes():
    assert encode_codes(pd.Series(["00004", "4", None, "x", 123456]), 5).tolist() == [4, 4, -2, -1, -1]


def test_2026_version_targets_new_code(ref):
    cw = ref.crosswalk
    frame = pd.DataFrame({"old_commune_code": cw.loc[(cw["new_commune_code"] == "06970") & ~cw["is_split"], "old_commune_code"]})
    assert set(convert_codes(frame, ref)["new_commune_code"]) == {"06970"}
    assert set(convert_codes(frame, load_reference("vpd-2026.07"))["new_commune_code"]) == {"06978"}
