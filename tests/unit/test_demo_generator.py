"""The demo world's building blocks, in memory (no database): determinism, defects, validity."""

from __future__ import annotations

import io
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapnhap.sources import DEFAULT_SOURCES_DIR, load_sources
from sapnhap_dev.demo import generator as g

SIZE = 40


def _build(seed: int = 7, size: int = SIZE) -> dict[tuple[str, str], pd.DataFrame]:
    return g._build(seed, size, g._Cids(set(), g._units().old_province_codes))


@pytest.fixture(scope="module")
def tables() -> dict[tuple[str, str], pd.DataFrame]:
    return _build()


def _cid_ok(cid: object, gender: str, birth: pd.Timestamp, provinces: set[str]) -> bool:
    if not isinstance(cid, str) or not re.fullmatch(r"\d{12}", cid):
        return False
    year = birth.year
    century = (2 if year >= 2000 else 0) + (1 if gender == "nu" else 0)
    return cid[0] == "0" and cid[1:3] in provinces and int(cid[3]) == century and cid[4:6] == f"{year % 100:02d}"


def test_source_files_validate_and_cover_the_demo_sources() -> None:
    sources = {s.id: s for s in load_sources(DEFAULT_SOURCES_DIR)}
    assert set(g.SOURCE_IDS) <= set(sources)
    assert {sources[s].kind for s in g.SOURCE_IDS} == {"postgres", "sqlite", "files"}
    for source_id in g.SOURCE_IDS:
        source = sources[source_id]
        assert source.conn_id == f"legacy_{source_id}"
        assert source.old_units.province in ("02", "08")
        for dataset in source.datasets:
            assert (source_id, dataset) in g._LAYOUTS


def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b, c = _build(7), _build(7), _build(8)
    assert a.keys() == b.keys()
    for key in a:
        pd.testing.assert_frame_equal(a[key], b[key])
    assert not a[("hg_vixuyen_motcua", "dossiers")]["dossier_code"].equals(c[("hg_vixuyen_motcua", "dossiers")]["dossier_code"])


def test_every_defect_kind_is_present(tables: dict) -> None:
    present = set()
    for frame in tables.values():
        present |= set(frame["_defect"].dropna())
    assert present == set(g.DEFECTS)


def test_size_scales_rows_roughly_linearly() -> None:
    small, large = _build(size=100), _build(size=400)
    for key in small:
        ratio = len(large[key]) / len(small[key])
        assert 3.0 < ratio < 5.0, (key, ratio)


def test_units_are_real_old_units_of_the_merged_province(tables: dict) -> None:
    units = g._units().communes.set_index("code")
    for (source_id, dataset), frame in tables.items():
        if "old_commune_code" not in frame or dataset == "dossier_steps":
            continue
        clean = frame[frame["_defect"].isna()]
        codes = set(clean["old_commune_code"])
        assert codes <= set(units.index), (source_id, dataset)
        assert set(units.loc[list(codes), "province_code"]) <= {"02", "08"}
        # A clean record never sits in a split commune: those are tagged split_*.
        assert not units.loc[list(codes), "is_split"].any()


def test_split_records_follow_the_reference_rules(tables: dict) -> None:
    from sapnhap.reference import load_reference, load_split_rules
    from sapnhap.reference.convert import convert_codes

    ref = load_reference()
    rules = load_split_rules("08")
    seen = set()
    for frame in tables.values():
        split = frame[frame["_defect"].isin(["split_with_rule", "split_no_rule"])]
        if split.empty:
            continue
        out = convert_codes(split, ref, address_detail_col="address_detail", rules=rules)
        with_rule = (split["_defect"] == "split_with_rule").to_numpy()
        assert (out["mapping_method"].astype(object)[with_rule] == "rule").all()
        assert (out["new_commune_code"].astype(object)[with_rule].to_numpy() == split["_expected"][with_rule].to_numpy()).all()
        assert (out["mapping_status"].astype(object)[~with_rule] == "review").all()
        seen |= set(split["_defect"])
    assert seen == {"split_with_rule", "split_no_rule"}


def test_clean_citizen_ids_are_valid_and_broken_ones_are_not(tables: dict) -> None:
    provinces = set(g._units().old_province_codes)
    kinds = set()
    for source_id in ("tq_sonduong_dancu", "hg_bacquang_sqlite", "tq_yenson_xa_exports"):
        res = tables[(source_id, "residents")]
        births = pd.to_datetime(res["birth_date"])
        ok = np.array([_cid_ok(c, s, b, provinces) for c, s, b in zip(res["citizen_id"], res["gender"], births, strict=True)])
        bad = (res["_defect"] == "bad_citizen_id").to_numpy()
        assert ok[~bad].all(), res[~bad & ~ok][["citizen_id", "gender", "birth_date"]]
        assert not ok[bad].any()
        kinds |= set(res.loc[bad, "_detail"])
    assert kinds == {"11_digits", "bad_province_prefix", "century_gender_mismatch"}


def test_citizen_ids_are_unique_except_declared_duplicates(tables: dict) -> None:
    people = pd.concat([tables[(s, "residents")] for s in ("tq_sonduong_dancu", "hg_bacquang_sqlite", "tq_yenson_xa_exports")])
    originals = people[~people["_defect"].isin(["dup_in_system", "dup_cross_system"])]
    assert originals["citizen_id"].is_unique
    dups = people[people["_defect"].isin(["dup_in_system", "dup_cross_system"])]
    assert dups["citizen_id"].isin(originals["citizen_id"]).all()


def test_cross_system_duplicates_point_at_their_original(tables: dict) -> None:
    vx = tables[("hg_vixuyen_motcua", "dossiers")]
    bq = tables[("hg_bacquang_sqlite", "dossiers")]
    shared = bq[bq["_defect"] == "dup_cross_system"]
    assert len(shared) >= 1
    assert shared["dossier_code"].isin(vx["dossier_code"]).all()
    assert shared["_related"].str.startswith("hg_vixuyen_motcua|").all()
    ys = tables[("tq_yenson_xa_exports", "residents")]
    movers = ys[ys["_defect"] == "dup_cross_system"]
    sd = tables[("tq_sonduong_dancu", "residents")]
    assert movers["citizen_id"].isin(sd["citizen_id"]).all()
    assert not movers["old_commune_code"].isin(sd["old_commune_code"]).any()  # they moved district


def test_dossier_defects_are_what_they_say(tables: dict) -> None:
    for source_id in ("hg_vixuyen_motcua", "hg_bacquang_sqlite", "tq_yenson_xa_exports"):
        d = tables[(source_id, "dossiers")]
        due = d[d["_defect"] == "due_before_received"]
        assert len(due) and (due["due_date"] < due["received_date"]).all()
        clean = d[d["_defect"].isna()]
        assert (clean["due_date"] >= clean["received_date"]).all()
        after = d[d["_defect"] == "old_code_after_merger"]
        assert len(after) and (after["received_date"] >= pd.Timestamp("2025-07-01")).all()
        assert (clean["received_date"] < pd.Timestamp("2025-07-01")).all()
        assert d.loc[d["_defect"] == "unknown_status", "_raw_status"].notna().all()
        assert (pd.to_datetime(d["updated_at"]) < pd.Timestamp(g.CLOCK_START)).all()


def test_steps_out_of_order_only_where_tagged(tables: dict) -> None:
    steps = tables[("hg_vixuyen_motcua", "dossier_steps")].sort_values(["dossier_code", "step_no"])
    previous = steps.groupby("dossier_code")["started_at"].shift()
    backwards = (steps["started_at"] < previous).to_numpy()
    tagged = (steps["_defect"] == "steps_out_of_order").to_numpy()
    assert tagged.any()
    assert (backwards == tagged).all()


def test_every_bad_date_variant_appears(tables: dict) -> None:
    details = set()
    for frame in tables.values():
        details |= set(frame.loc[frame["_defect"] == "bad_date", "_detail"])
    assert details == {"impossible_day", "iso_month_13", "empty", "not_a_date", "month_13"}


def test_bad_dates_do_not_parse_with_the_declared_format() -> None:
    for fmt in ("%d/%m/%Y", "%d-%m-%Y"):
        values, details = g._bad_date_values(fmt, 10)
        assert len(set(details)) >= 4
        for v in values:
            assert pd.to_datetime(pd.Series([v]), format=fmt, errors="coerce").isna().all(), v


def test_cp1258_encoding_round_trips_vietnamese() -> None:
    text = "Thôn Nà Lừa, Hoàng Thị Dở, Nguyễn Văn Đạt, Ngõ Ỷ Lan"
    raw = g._to_cp1258(text)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert unicodedata.normalize("NFC", raw.decode("cp1258")) == text


def test_minimal_xlsx_reads_back_with_openpyxl(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Mã hồ sơ": ["A<1>&", "B"], "Ngày nhận": ["31/02/2024", None]}, dtype=object)
    path = tmp_path / "ho_so_x.xlsx"
    g._write_xlsx(path, "HoSo", frame)
    back = pd.read_excel(path, sheet_name="HoSo", dtype=str)
    assert back.columns.tolist() == ["Mã hồ sơ", "Ngày nhận"]
    assert back["Mã hồ sơ"].tolist() == ["A<1>&", "B"]
    assert back["Ngày nhận"].isna().tolist() == [False, True]


def test_render_uses_the_source_files_names_and_values(tables: dict) -> None:
    legacy = g._render("hg_vixuyen_motcua", "dossiers", tables[("hg_vixuyen_motcua", "dossiers")])
    assert {"id", "ma_ho_so", "ngay_nhan", "trang_thai", "ngay_cap_nhat"} <= set(legacy.columns)
    assert set(legacy["trang_thai"]) <= {"Đã tiếp nhận", "Đang xử lý", "Đã trả kết quả", "Trả lại", "Hủy", "Chờ bổ sung"}
    assert legacy["ngay_nhan"].dropna().str.match(r"^(\d{2}/\d{2}/\d{4}|2024-13-01|abc|)$").all()
    res = g._render("hg_bacquang_sqlite", "residents", tables[("hg_bacquang_sqlite", "residents")])
    assert set(res["sex"]) == {"M", "F"}


def test_csv_writer_marks_nfd_and_bom(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Họ và tên": ["Nguyễn Thị Hà"]}, dtype=object)
    g._write_csv(tmp_path / "a.csv", frame.copy(), encoding="utf-8-sig", nfd=True, bom=True)
    raw = (tmp_path / "a.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    header, body = text.split("\r\n", 1)
    assert header == "STT,Họ và tên"
    assert "Nguyễn" not in body and unicodedata.normalize("NFC", body).startswith("1,Nguyễn Thị Hà")
    assert pd.read_csv(io.StringIO(text), dtype=str)["STT"].tolist() == ["1"]
