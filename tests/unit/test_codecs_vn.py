"""TCVN3 (ABC) and VNI as Python codecs: known strings of each, round trip, streaming, a source's encoding."""

from __future__ import annotations

import codecs
import io
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import sapnhap  # noqa: F401 - registers the codecs
from sapnhap.extract import extract_to_parquet
from sapnhap.sources import get_source

MOTTO = "Cộng hoà xã hội chủ nghĩa Việt Nam. Độc lập - Tự do - Hạnh phúc"
# As TCVN3 (.VnTime) and VNI (VNI-Times) documents hold it, shown byte for byte as Windows-1252.
MOTTO_TCVN3 = "Céng hoµ x· héi chñ nghÜa ViÖt Nam. §éc lËp - Tù do - H¹nh phóc".encode("latin-1")
MOTTO_VNI = "Coäng hoaø xaõ hoäi chuû nghóa Vieät Nam. Ñoäc laäp - Töï do - Haïnh phuùc".encode("cp1252")

ALPHABET = [
    unicodedata.normalize("NFC", base + tone)
    for base in "aăâeêioôơuưyAĂÂEÊIOÔƠUƯY"
    for tone in ("", "\u0301", "\u0300", "\u0309", "\u0303", "\u0323")
] + ["đ", "Đ"]


def test_known_strings_decode() -> None:
    assert MOTTO_TCVN3.decode("tcvn3") == MOTTO
    assert "Hµ Néi".encode("latin-1").decode("tcvn3") == "Hà Nội"
    assert MOTTO_VNI.decode("vni") == MOTTO
    assert "Xin chaøo caùc baïn".encode("cp1252").decode("vni") == "Xin chào các bạn"
    assert "Nguyeãn Thò Hueä".encode("cp1252").decode("vni") == "Nguyễn Thị Huệ"


def test_every_vietnamese_letter_round_trips() -> None:
    text = "".join(ALPHABET) + " " + MOTTO
    for name in ("tcvn3", "vni"):
        assert text.encode(name).decode(name) == text
    # Lower-case letters are one byte each in TCVN3, as the standard lays them out.
    assert all(len(c.encode("tcvn3")) == 1 for c in ALPHABET if c.islower())
    assert MOTTO.encode("tcvn3") == MOTTO_TCVN3
    assert MOTTO.encode("vni") == MOTTO_VNI
    # Decomposed input encodes the same as composed.
    assert unicodedata.normalize("NFD", MOTTO).encode("vni") == MOTTO_VNI


def test_names_aliases_and_errors() -> None:
    assert codecs.lookup("TCVN3").name == "tcvn3" and codecs.lookup("VNI-Windows").name == "vni"
    with pytest.raises(UnicodeEncodeError):
        "中文".encode("tcvn3")
    assert "中".encode("vni", errors="replace") == b"?"


@pytest.mark.parametrize("name", ["tcvn3", "vni"])
def test_streaming_decoders_join_a_letter_split_from_its_mark(name: str, tmp_path: Path) -> None:
    text = "Thuỵ Ỷ Ứng Việt " * 50
    data = text.encode(name)
    decoder = codecs.getincrementaldecoder(name)()
    # One byte at a time: every letter/mark pair is split across chunks.
    assert "".join(decoder.decode(data[i : i + 1]) for i in range(len(data))) + decoder.decode(b"", final=True) == text
    path = tmp_path / "x.txt"
    path.write_bytes(data)
    with open(path, encoding=name) as fh:
        assert fh.read() == text
    assert io.TextIOWrapper(io.BytesIO(data), encoding=name).read() == text


@pytest.mark.parametrize("name", ["tcvn3", "vni"])
def test_a_source_declares_a_legacy_encoding(name: str, tmp_path: Path) -> None:
    source = get_source("tq_yenson_xa_exports")
    mapping = source.datasets["households"].model_copy(update={"encoding": name})
    source = source.model_copy(update={"datasets": {"households": mapping}})
    folder = tmp_path / "exports"
    folder.mkdir()
    frame = pd.DataFrame({
        "Mã hộ": ["H1", "H2"], "CCCD chủ hộ": ["008190001234", "008190001235"], "Mã xã": ["02431", "02434"],
        "Địa chỉ": ["Thôn Đồng Tâm, xã Trung Môn", "Tổ 5, thị trấn Tân Bình"], "Ngày lập hộ": ["01/02/2003"] * 2,
        "Ngày cập nhật": ["02/03/2024 08:00:00"] * 2,
    })
    (folder / "ho_gia_dinh_1.csv").write_bytes(frame.to_csv(index=False).encode(name))
    result = extract_to_parquet(source, "households", str(folder), tmp_path / "out.parquet")
    assert result.rows == 2 and not result.quarantined_files
    table = pq.read_table(result.path).to_pandas()
    assert table["Địa chỉ"].tolist() == frame["Địa chỉ"].tolist()


@pytest.mark.parametrize("name", ["tcvn3", "vni"])
def test_the_assessment_proposes_the_legacy_encoding_it_sees(name: str) -> None:
    from sapnhap.quality import profile_frame

    names = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Hoàng Thị Huệ", "Phạm Đức Việt"]
    # A legacy tool's bytes read as Windows-1252, as an export declared cp1252/latin-1 shows them.
    shown = [n.encode(name).decode("cp1252", errors="replace") for n in names]
    df = pd.DataFrame({"citizen_id": [f"0081900{i:05d}" for i in range(5)], "full_name": shown})
    profile = profile_frame(df, dataset="residents", code_column=None)
    assert profile["text_anomalies"]["proposed_encoding"] == name
    assert any(f"encoding: {name}" in f for f in profile["findings"])
    unicode_only = profile_frame(df.assign(full_name=names), dataset="residents", code_column=None)
    assert unicode_only["text_anomalies"]["proposed_encoding"] is None


@pytest.mark.parametrize("name", ["tcvn3", "vni"])
def test_a_database_source_declares_a_legacy_encoding_and_its_rows_are_flagged(name: str) -> None:
    from sapnhap.reference import load_reference
    from sapnhap.transform import transform_frame

    source = get_source("hg_vixuyen_motcua")  # PostgreSQL: the driver returns the legacy bytes as Latin text
    mapping = source.datasets["dossiers"].model_copy(update={"encoding": name})
    source = source.model_copy(update={"datasets": {"dossiers": mapping}})
    names = ["Nguyễn Văn An", "Đỗ Thị Huệ"]
    raw = pd.DataFrame({
        "id": ["1", "2"], "ma_ho_so": ["HS1", "HS2"], "ma_thu_tuc": "1.001",
        "ten_thu_tuc": "Đăng ký khai sinh".encode(name).decode("latin-1"),
        "nguoi_nop": [n.encode(name).decode("cp1252", errors="ignore") if name == "vni" else n.encode(name).decode("latin-1")
                      for n in names],
        "so_cccd": "002090012345", "ma_xa": "00703", "dia_chi_chi_tiet": "Thon Ban Man",
        "ngay_nhan": "01/02/2024", "ngay_hen_tra": "05/02/2024", "ngay_tra": None, "trang_thai": "Đã tiếp nhận".encode(name).decode("latin-1"),
        "ngay_cap_nhat": "2024-02-01 10:00:00",
    })
    result = transform_frame(raw, source, "dossiers", reference=load_reference())
    frame = result.frame.set_index("dossier_code")
    assert frame["applicant_name"].tolist() == names
    assert frame["procedure_name"].tolist() == ["Đăng ký khai sinh"] * 2
    assert frame["status"].tolist() == ["received"] * 2  # mapped from the decoded legacy value
    assert all("applicant_name:decoded" in f for f in frame["text_repairs"])
    assert result.text_repaired == 2


def _per_column(encoding: str, column_encodings: dict[str, str]):  # noqa: ANN202 - Source
    source = get_source("hg_vixuyen_motcua")
    mapping = source.datasets["dossiers"].model_validate(
        {**source.datasets["dossiers"].model_dump(), "encoding": encoding, "column_encodings": column_encodings}
    )
    return source.model_copy(update={"datasets": {"dossiers": mapping}})


def _dossiers(**columns: object) -> pd.DataFrame:
    base = {
        "id": ["1", "2"], "ma_ho_so": ["HS1", "HS2"], "ma_thu_tuc": "1.001", "ten_thu_tuc": "Đăng ký khai sinh",
        "nguoi_nop": ["Nguyễn Văn An", "Đỗ Thị Huệ"], "so_cccd": "002090012345", "ma_xa": "00703",
        "dia_chi_chi_tiet": "Thôn Bản Mán", "ngay_nhan": "01/02/2024", "ngay_hen_tra": "05/02/2024", "ngay_tra": None,
        "trang_thai": "Đã tiếp nhận", "ngay_cap_nhat": "2024-02-01 10:00:00",
    }
    return pd.DataFrame({**base, **columns})


def test_a_legacy_encoding_is_declared_per_column_and_only_its_rows_are_flagged() -> None:
    from sapnhap.reference import load_reference
    from sapnhap.transform import transform_frame

    # One column of a Unicode system came from an old VNI tool (names typed in VNI-Times, stored as bytes).
    names = ["Nguyễn Văn An", "Đỗ Thị Huệ"]
    shown = [n.encode("vni").decode("cp1252", errors="ignore") for n in names]
    source = _per_column("utf-8", {"applicant_name": "vni"})
    result = transform_frame(_dossiers(nguoi_nop=[shown[0], names[1]]), source, "dossiers", reference=load_reference())
    frame = result.frame.set_index("dossier_code")
    assert frame["applicant_name"].tolist() == names
    assert frame["address_detail"].tolist() == ["Thôn Bản Mán"] * 2  # Latin-1 letters of other columns stay Unicode
    assert frame["text_repairs"].tolist() == ["applicant_name:decoded", None]  # the row that was decoded, only
    assert result.text_repaired == 1


def test_a_column_can_be_unicode_in_a_legacy_encoded_database() -> None:
    from sapnhap.reference import load_reference
    from sapnhap.transform import transform_frame

    # The system is TCVN3, but its address column was re-typed in Unicode: decoding it again would garble "ô", "á".
    source = _per_column("tcvn3", {"address_detail": "utf-8"})
    raw = _dossiers(nguoi_nop=[n.encode("tcvn3").decode("latin-1") for n in ("Nguyễn Văn An", "Đỗ Thị Huệ")],
                    ten_thu_tuc="Đăng ký khai sinh".encode("tcvn3").decode("latin-1"),
                    trang_thai="Đã tiếp nhận".encode("tcvn3").decode("latin-1"), dia_chi_chi_tiet="Thôn Bản Mán")
    frame = transform_frame(raw, source, "dossiers", reference=load_reference()).frame.set_index("dossier_code")
    assert frame["applicant_name"].tolist() == ["Nguyễn Văn An", "Đỗ Thị Huệ"]
    assert frame["address_detail"].tolist() == ["Thôn Bản Mán"] * 2
    assert all("address_detail" not in f for f in frame["text_repairs"])


@pytest.mark.parametrize(
    ("encoding", "column_encodings", "message"),
    [
        ("utf-8", {"applicant_nam": "vni"}, "column_encodings: applicant_nam is not a mapped column"),
        ("utf-8", {"applicant_name": "latin-1"}, "column_encodings.applicant_name: tcvn3, vni or utf-8"),
    ],
)
def test_a_wrong_column_encoding_is_a_clear_error(encoding: str, column_encodings: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        _per_column(encoding, column_encodings)


def test_the_assessment_proposes_an_encoding_per_column_when_other_columns_are_unicode() -> None:
    from sapnhap.quality import profile_frame

    names = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Hoàng Thị Huệ", "Phạm Đức Việt"]
    df = pd.DataFrame({
        "citizen_id": [f"0081900{i:05d}" for i in range(5)],
        "full_name": [n.encode("vni").decode("cp1252", errors="replace") for n in names],  # from an old VNI tool
        "address_detail": ["Thôn Đồng Tâm, xã Trung Môn"] * 5,  # already Unicode: a dataset encoding would garble it
    })
    profile = profile_frame(df, dataset="residents", code_column=None)
    assert profile["text_anomalies"]["proposed_column_encodings"] == {"full_name": "vni"}
    assert any("column_encodings: {full_name: vni}" in f for f in profile["findings"])
    legacy_only = profile_frame(df.drop(columns="address_detail"), dataset="residents", code_column=None)
    assert not any("column_encodings" in f for f in legacy_only["findings"])  # the whole dataset: encoding: vni
