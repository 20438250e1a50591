"""Transform: legacy rows -> canonical rows under new codes, nothing dropped, lineage kept."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pytest

from conftest import raw_dossiers as _raw
from sapnhap.reference import load_reference, load_split_rules
from sapnhap.sources import get_source
from sapnhap.transform import normalize_text, pad_code, parse_dates, row_hash, transform_frame


@pytest.fixture(scope="module")
def ref():
    return load_reference()


def test_dates_parse_with_source_format_and_keep_unparseable_text() -> None:
    parsed, raw = parse_dates(pd.Series(["01/02/2024", "31/02/2024", "2024-03-05", None, "abc"]), "%d/%m/%Y", with_time=False)
    assert parsed.iloc[0] == pd.Timestamp("2024-02-01")
    assert parsed.iloc[2] == pd.Timestamp("2024-03-05")
    assert pd.isna(parsed.iloc[1]) and raw.iloc[1] == "31/02/2024"
    assert raw.iloc[4] == "abc"
    assert raw.iloc[3] is None and raw.iloc[0] is None


def test_codes_regain_leading_zeros_and_text_is_composed() -> None:
    assert pad_code(pd.Series(["703", "00703", "abc", None]), 5).tolist()[:3] == ["00703", "00703", "abc"]
    decomposed = unicodedata.normalize("NFD", "Nguyễn Thị Hằng")
    assert normalize_text(pd.Series([decomposed, "  ", None])).tolist() == ["Nguyễn Thị Hằng", None, None]


def test_row_hash_depends_on_content_only() -> None:
    a = pd.DataFrame({"x": ["1", "2"], "y": ["a", "b"]})
    b = pd.DataFrame({"x": ["1", "3"], "y": ["a", "b"]}, index=[7, 8])
    assert row_hash(a, ["x", "y"]).iloc[0] == row_hash(b, ["x", "y"]).iloc[0]
    assert row_hash(a, ["x", "y"]).iloc[1] != row_hash(b, ["x", "y"]).iloc[1]


def test_rows_get_new_codes_and_lineage(ref) -> None:
    source = get_source("hg_vixuyen_motcua")
    result = transform_frame(_raw(ma_xa=["00703", "703"]), source, "dossiers", reference=ref, split_rules=load_split_rules())
    frame = result.frame
    assert frame["old_commune_code"].tolist() == ["00703", "00703"]
    assert frame["new_province_code"].tolist() == ["08", "08"]
    assert frame["mapping_status"].tolist() == ["mapped", "mapped"]
    assert (frame["source_id"] == "hg_vixuyen_motcua").all()
    assert frame["source_key"].tolist() == ["1", "2"]
    assert frame["old_province_code"].tolist() == ["02", "02"]
    assert frame["crosswalk_version"].eq(ref.version).all()
    assert frame["unit_scheme"].eq("old").all()
    assert frame["status"].tolist() == ["received", "received"]


def test_nothing_is_dropped_bad_rows_stay_for_quarantine(ref) -> None:
    source = get_source("hg_vixuyen_motcua")
    raw = _raw(ma_xa=["99999", None, "00703"], ngay_nhan=["31/02/2024", "01/01/2024", "xx"])
    result = transform_frame(raw, source, "dossiers", reference=ref)
    frame = result.frame
    assert len(frame) == 3 and result.merged_duplicates.empty
    assert frame["mapping_status"].tolist() == ["unknown_code", "missing_code", "mapped"]
    assert frame["received_date__raw"].tolist() == ["31/02/2024", None, "xx"]


def test_repeated_natural_key_in_batch_is_merged_latest_wins(ref) -> None:
    source = get_source("hg_vixuyen_motcua")
    raw = _raw(ma_ho_so=["HS1", "HS1", "HS2"], ngay_cap_nhat=["2024-02-03 10:00:00", "2024-02-01 10:00:00", "2024-02-02 10:00:00"])
    result = transform_frame(raw, source, "dossiers", reference=ref)
    assert sorted(result.frame["source_key"]) == ["1", "3"]
    merged = result.merged_duplicates
    assert merged[["source_key", "kept_source_key", "reason"]].values.tolist() == [["2", "1", "duplicate_in_batch"]]
    assert len(result.frame) + len(merged) == len(raw)



def test_a_record_read_twice_in_a_batch_keeps_its_latest_version(ref) -> None:
    # The legacy row and its requeued correction, under different natural keys: one record, one row.
    source = get_source("hg_vixuyen_motcua")
    raw = _raw(id=["7", "8", "7"], ma_ho_so=["HS9", "HS2", "HS1"],
               ngay_cap_nhat=["2024-02-03 10:00:00", "2024-02-02 10:00:00", "2024-02-01 10:00:00"])
    result = transform_frame(raw, source, "dossiers", reference=ref)
    assert sorted(zip(result.frame["source_key"], result.frame["dossier_code"], strict=True)) == [
        ("7", "HS9"), ("8", "HS2")]
    merged = result.merged_duplicates
    assert merged[["source_key", "kept_source_key", "reason"]].values.tolist() == [["7", "7", "same_record_in_batch"]]
    assert len(result.frame) + len(merged) == len(raw)

def test_records_after_the_merger_with_old_codes_are_flagged(ref) -> None:
    source = get_source("hg_vixuyen_motcua")
    result = transform_frame(_raw(ngay_nhan=["30/06/2025", "02/07/2025"]), source, "dossiers", reference=ref)
    assert result.frame["flag_old_code_after_merger"].tolist() == [False, True]
    assert result.frame["record_era"].tolist() == ["before_merger", "after_merger"]


def test_split_commune_is_never_guessed(ref) -> None:
    split = ref.crosswalk[ref.crosswalk["is_split"]]
    split = split[split["old_province_code"].isin(["02", "08"])]
    code = split["old_commune_code"].iloc[0]
    source = get_source("hg_vixuyen_motcua")
    result = transform_frame(_raw(ma_xa=[code], dia_chi_chi_tiet=["Không rõ thôn"]), source, "dossiers", reference=ref)
    row = result.frame.iloc[0]
    assert row["mapping_status"] == "review"
    assert pd.isna(row["new_commune_code"])
    assert set(row["mapping_candidates"].split("|")) == set(split.loc[split["old_commune_code"] == code, "new_commune_code"])


def _row_hash_of_release_0_1(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """row_hash as every release before wrote it (every text through a Python object per value)."""
    as_text = frame[columns].astype("object").where(frame[columns].notna(), None).astype("string")
    hashed = pd.util.hash_pandas_object(as_text, index=False, categorize=False)
    return pd.Series(np.char.mod("%016x", hashed.to_numpy()), index=frame.index, dtype="object")


def test_row_hashes_are_the_hashes_every_platform_row_already_carries() -> None:
    n = 50
    frame = pd.DataFrame({
        "text": pd.Series(["Nguyễn Văn An", None, "", "a|b", np.nan] * 10, dtype=object),
        "inferred": pd.Series(["x", "y", None, "z", "w"] * 10),  # pandas' own str dtype
        "when": pd.to_datetime(["2024-02-01 10:00:00", None, "1899-12-31", "2024-02-01 10:00:00.250",
                                "2025-07-01"] * 10, format="ISO8601").astype("datetime64[ms]"),
        "day": pd.to_datetime(["2024-02-01", None, "2024-02-29", "1970-01-01", "2099-12-31"] * 10).astype("datetime64[ms]"),
        "number": pd.array([1, None, 3, -4, 0] * 10, dtype="Int64"),
        "flag": [True, False, True, False, True] * 10,
        "category": pd.Categorical(["mapped", "review", None, "mapped", "unknown_code"] * 10),
        "mixed": pd.Series([703, "00703", None, 1.5, "x"] * 10, dtype=object),
        "ratio": [0.5, np.nan, 1.0, 2.25, 3.0] * 10,
    }, index=pd.RangeIndex(100, 100 + n))
    columns = list(frame.columns)
    assert row_hash(frame, columns).equals(_row_hash_of_release_0_1(frame, columns))
    assert row_hash(frame.iloc[:0], columns).empty
    # Column order and every single column count, as before.
    for cols in ([columns[0]], columns[::-1], ["when", "day"]):
        assert row_hash(frame, cols).equals(_row_hash_of_release_0_1(frame, cols))


def test_a_transformed_batch_keeps_its_row_hashes(ref) -> None:  # noqa: ANN001
    from sapnhap.datasets import get_dataset

    raw = _raw(ma_xa=["00703", "703", None, "99999"], ngay_nhan=["31/02/2024", "01/01/2024", None, "02/02/2024"],
               ngay_tra=[None, "03/01/2024", None, "05/02/2024"], nguoi_nop=["Nguyễn Văn An", None, "Lê C", ""])
    out = transform_frame(raw, get_source("hg_vixuyen_motcua"), "dossiers", reference=ref).frame
    columns = get_dataset("dossiers").column_names
    assert out["record_hash"].tolist() == _row_hash_of_release_0_1(out, columns).tolist()


def test_pad_code_strips_and_pads_without_a_python_function_per_value() -> None:
    values = pd.Series([" 703 ", "00703", None, "", "7a", 703, "  ", "12345678"], dtype=object)
    assert pad_code(values, 5).tolist() == ["00703", "00703", None, None, "7a", 703, None, "12345678"]


def test_normalize_text_reads_arrow_text_as_it_reads_python_text() -> None:
    values = ["  a ", None, "e\u0301", "", np.nan, "\u3000x\u00a0", "Thôn\u200b 1"]
    arrow = pd.Series(values, dtype="str")  # what a Parquet extract gives
    python = pd.Series(values, dtype=object)
    assert normalize_text(arrow).tolist() == normalize_text(python).tolist() == ["a", None, "é", None, None, "x",
                                                                                "Thôn\u200b 1"]
    assert normalize_text(arrow).dtype == object
