"""profile_frame: the assessment profile of a raw extract (R13)."""

from __future__ import annotations

import json
import unicodedata

import pandas as pd

from sapnhap.quality import profile_frame
from sapnhap.quality.profile import text_anomalies


def _raw() -> pd.DataFrame:
    return pd.DataFrame({
        "citizen_id": ["001090012340", "001090012340", "001090012342", None],
        "full_name": [
            "Nguyễn Văn An",
            unicodedata.normalize("NFD", "Trần Thị Bình"),
            "Hµ Néi",  # TCVN3 text shown as Windows-1252
            "Nguyá»…n VÄƒn",  # UTF-8 read as Windows-1252
        ],
        "birth_date": ["01/05/1990", "01/05/1990", "", None],
        "gender": ["nam", "nam", "nu", "nu"],
        "old_commune_code": ["1", "00001", "09999", None],
    })


def test_profile_counts_and_rates():
    p = profile_frame(_raw(), dataset="residents", code_column="old_commune_code", known_old_codes={"00001"})
    assert p["row_count"] == 4
    assert [c["name"] for c in p["columns"]] == list(_raw().columns)
    assert p["null_rates"]["birth_date"] == 0.5  # blank counts as missing
    assert p["distinct_counts"]["gender"] == 2
    assert p["missing_required_columns"] == []
    json.dumps(p)  # the profile is stored as JSON


def test_profile_duplicate_keys_are_counted_and_masked():
    p = profile_frame(_raw(), dataset="residents", code_column=None, known_old_codes=None)
    d = p["duplicate_keys"]
    assert d["duplicate_rows"] == 2 and d["duplicate_keys"] == 1 and d["rows_with_missing_key"] == 1
    assert d["examples"] == [{"citizen_id": "001******340"}]
    assert "001090012340" not in json.dumps(p)


def test_profile_code_coverage_pads_lost_zeros():
    p = profile_frame(_raw(), dataset="residents", code_column="old_commune_code", known_old_codes={"00001"})
    cov = p["code_coverage"]
    assert cov["checked"] and cov["non_empty"] == 3
    assert abs(cov["known_share"] - 2 / 3) < 1e-9
    assert cov["unknown_codes"] == ["09999"]


def test_profile_detects_text_anomalies():
    p = profile_frame(_raw(), dataset="residents", code_column=None, known_old_codes=None)
    names = p["text_anomalies"]["columns"]["full_name"]
    assert names["decomposed_share"] == 0.25
    assert names["legacy_8bit_share"] == 0.25
    assert names["utf8_as_latin1_share"] == 0.25
    assert any("TCVN3" in f for f in p["findings"])


def test_clean_vietnamese_text_raises_no_suspicion():
    names = pd.Series(["Nguyễn Thị Hoà", "Phạm Quốc Khánh", "Đoàn Thuý Hoãn", "Lê Ánh Tuyết", "Bùi Ê Đê"])
    t = text_anomalies(names)
    assert t["decomposed_share"] == t["legacy_8bit_share"] == t["utf8_as_latin1_share"] == 0.0


def test_profile_of_empty_frame():
    p = profile_frame(pd.DataFrame(columns=["dossier_code"]), dataset="dossiers", code_column="old_commune_code",
                      known_old_codes=set())
    assert p["row_count"] == 0
    assert "received_date" in p["missing_required_columns"]
    assert p["duplicate_keys"]["duplicate_rows"] == 0
