"""Text cleaned and repaired at the boundary: control characters, odd spaces, mojibake."""

from __future__ import annotations

import ftfy.bad_codecs  # noqa: F401 - registers "sloppy-windows-1252"
import pandas as pd
import pytest

from conftest import raw_dossiers as _raw
from sapnhap.reference import load_reference
from sapnhap.sources import get_source
from sapnhap.textfix import repair_frame
from sapnhap.transform import transform_frame


@pytest.fixture(scope="module")
def ref():
    return load_reference()


def test_control_characters_nul_and_odd_spaces_are_cleaned_and_flagged(ref) -> None:
    raw = _raw(
        dia_chi_chi_tiet=["Thôn\x00 Bản Mán", "Tổ\u00a05", "Xóm\u200b Chợ", "Thôn Nà Pồng"],
        nguoi_nop=["Nguyễn Văn An", "Lê\x07 Thị Hoa", "Hoàng Văn\ufeff Bình", "Vũ Thị Lan"],
        id=["1", "2\x00", "3", "4"],
    )
    result = transform_frame(raw, get_source("hg_vixuyen_motcua"), "dossiers", reference=ref)
    frame = result.frame.set_index("dossier_code")
    assert frame["address_detail"].tolist() == ["Thôn Bản Mán", "Tổ 5", "Xóm Chợ", "Thôn Nà Pồng"]
    assert frame["applicant_name"].tolist() == ["Nguyễn Văn An", "Lê Thị Hoa", "Hoàng Văn Bình", "Vũ Thị Lan"]
    assert frame.loc["HS2", "source_key"] == "2"  # a NUL is the one character a key loses
    assert frame.loc["HS1", "text_repairs"] == "address_detail:cleaned"
    assert set(frame.loc["HS2", "text_repairs"].split(";")) == {"applicant_name:cleaned", "address_detail:cleaned"}
    assert frame.loc["HS3", "text_repairs"] == "applicant_name:cleaned;address_detail:cleaned"
    assert frame.loc["HS4", "text_repairs"] is None
    assert (result.text_cleaned, result.text_repaired) == (3, 0)
    # The raw frame (what the raw backup holds) is not changed, and the legacy row hash that
    # sapnhap.verify compares with the legacy database is the extracted row's.
    assert raw.loc[0, "dia_chi_chi_tiet"] == "Thôn\x00 Bản Mán"
    from sapnhap.verify import legacy_row_hashes

    assert frame["legacy_row_hash"].tolist() == legacy_row_hashes(raw, get_source("hg_vixuyen_motcua").datasets["dossiers"])


def test_mojibake_is_repaired_only_where_it_is_mojibake(ref) -> None:
    good = ["Nguyễn Văn An", "NGÃ\u00a0BA", "Đỗ Thị Ngã", "Hà Giang"]
    # As a Windows tool shows UTF-8 bytes (undefined 1252 bytes such as Đ's 0x90 become C1 controls).
    broken = ["Tráº§n Thá»‹ BÃ¬nh", "Nguyễn Văn Đức".encode().decode("sloppy-windows-1252")]
    assert broken[1].startswith("Nguyá»…n VÄƒn Ä\x90")
    raw = _raw(nguoi_nop=[*good, *broken])
    result = transform_frame(raw, get_source("hg_vixuyen_motcua"), "dossiers", reference=ref)
    frame = result.frame.set_index("dossier_code")
    assert frame["applicant_name"].tolist() == ["Nguyễn Văn An", "NGÃ BA", "Đỗ Thị Ngã", "Hà Giang",
                                                "Trần Thị Bình", "Nguyễn Văn Đức"]
    assert frame["text_repairs"].tolist() == [None, "applicant_name:cleaned", None, None] + ["applicant_name:mojibake"] * 2
    assert (result.text_cleaned, result.text_repaired) == (1, 2)
    # Upper-case mojibake is repaired too ("ĐÔNG" as a Windows tool shows its UTF-8 bytes).
    upper = transform_frame(_raw(nguoi_nop=["ĐÔNG".encode().decode("sloppy-windows-1252")]),
                            get_source("hg_vixuyen_motcua"), "dossiers", reference=ref)
    assert upper.frame["applicant_name"].tolist() == ["ĐÔNG"] and upper.text_repaired == 1


def test_repair_frame_leaves_non_text_and_missing_values() -> None:
    frame = pd.DataFrame({"a": [None, "x\x00", "Ã¡o"], "n": [1, 2, 3]})
    out, repairs = repair_frame(frame, {"a": "a", "n": "n"})
    assert out["a"].tolist() == [None, "x", "áo"]
    assert out["n"].tolist() == [1, 2, 3]
    assert repairs.flags.tolist() == [None, "a:cleaned", "a:mojibake"]
