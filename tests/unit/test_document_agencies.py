"""Documents (R16): old agencies re-mapped in the transform, by the row in force on the record's date."""

from __future__ import annotations

import pandas as pd
import pytest

from sapnhap.datasets import get_dataset
from sapnhap.documents import load_agencies
from sapnhap.reference import load_reference
from sapnhap.sources import get_source
from sapnhap.transform import transform_frame


@pytest.fixture(scope="module")
def ref():
    return load_reference()


def _raw_documents(**overrides) -> pd.DataFrame:
    base = {
        "ma_van_ban": ["QLVB.030.1", "QLVB.030.2", "QLVB.030.3", "QLVB.030.4"],
        "so_van_ban": ["Văn bản đi", "Văn bản đi", "Văn bản đến", "Văn bản đến"],
        "so_ky_hieu": ["12/QĐ-UBND", "13/QĐ-UBND", "45/SGTVT-VP", "46/SGTVT-VP"],
        "loai_van_ban": ["Quyết định"] * 4,
        "ma_co_quan_ban_hanh": ["02.030.UBND", "02.030.UBND", "02.SGTVT", "02.SGTVT"],
        "co_quan_ban_hanh": ["UBND huyện Vị Xuyên", "UBND huyện Vị Xuyên", "Sở GTVT Hà Giang", "Sở GTVT Hà Giang"],
        "ma_noi_nhan": ["02.00919.UBND", "02.00919.UBND", "02.030.UBND", "02.030.UBND"],
        "noi_nhan": ["UBND xã Minh Tân"] * 2 + ["UBND huyện Vị Xuyên"] * 2,
        # The district office issued before and after its abolition; the department merged on 01/03/2025.
        "ngay_ban_hanh": ["30/06/2025", "01/07/2025", "27/02/2025", "03/03/2025"],
        "ngay_den": [None, None, "28/02/2025", "04/03/2025"],
        "trich_yeu": ["Về việc A", "Về việc B", "Về việc C", "Về việc D"],
        "nguoi_ky": ["Lê Văn Cường"] * 4,
        "do_mat": ["Thường"] * 4,
        "trang_thai": ["Đã xử lý"] * 4,
        "tep_dinh_kem": [None] * 4,
        "ngay_cap_nhat": ["2025-07-02 08:00:00"] * 4,
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_issuers_and_receivers_are_remapped_by_the_row_in_force_and_the_old_unit_is_kept(ref) -> None:
    result = transform_frame(_raw_documents(), get_source("hg_vixuyen_qlvb"), "documents", reference=ref)
    f = result.frame.set_index("document_code")
    # Old codes and names stay beside the new ones.
    assert f["issuer_code"].tolist() == ["02.030.UBND", "02.030.UBND", "02.SGTVT", "02.SGTVT"]
    assert f["issuer_name"].iloc[0] == "UBND huyện Vị Xuyên"
    assert f["issuer_new_agency_code"].tolist() == ["N08.00913.UBND", "N08.SNV", None, "N08.SXD"]
    assert f["issuer_agency_status"].tolist() == ["mapped", "mapped", "unknown", "mapped"]
    # The receiver of an incoming document is re-mapped by the day it arrived.
    assert f.loc["QLVB.030.3", "receiver_new_agency_code"] == "N08.00913.UBND"
    assert f["receiver_new_agency_name"].iloc[0] == "UBND Xã Minh Tân"
    assert f["direction"].tolist() == ["outgoing", "outgoing", "incoming", "incoming"]
    _, version = load_agencies()
    assert f["agency_crosswalk_version"].eq(version).all() and version.startswith("agencies-")
    # The record hash covers the new agency: a re-mapped document is a changed record.
    assert f["record_hash"].is_unique


def test_processing_steps_are_remapped_by_the_time_of_the_step(ref) -> None:
    raw = pd.DataFrame({
        "ma_van_ban": ["QLVB.030.1", "QLVB.030.1", "QLVB.030.1"],
        "buoc": ["1", "2", "3"],
        "ma_don_vi": ["02.030.VP", "02.030.VP", "02.030.PVHTT"],
        "don_vi": ["Văn phòng", "Văn phòng", "Phòng Văn hóa"],
        "can_bo": ["A", "B", "C"],
        "hanh_dong": ["Tiếp nhận", "Chuyển xử lý", "Xử lý"],
        "thoi_gian": ["30/06/2025 16:00:00", "01/07/2025 08:00:00", "02/07/2025 08:00:00"],
        "ngay_cap_nhat": ["2025-07-02 08:00:00"] * 3,
    })
    frame = transform_frame(raw, get_source("hg_vixuyen_qlvb"), "document_steps", reference=ref).frame
    assert frame["unit_new_agency_code"].tolist() == ["N08.00913.UBND", "N08.SNV", None]
    assert frame["unit_agency_status"].tolist() == ["mapped", "mapped", "unknown"]
    assert frame["unit_code"].tolist() == ["02.030.VP", "02.030.VP", "02.030.PVHTT"]


def test_derived_columns_cannot_be_mapped_by_a_source_file() -> None:
    ds = get_dataset("documents")
    assert "issuer_new_agency_code" in ds.column_names
    assert "issuer_new_agency_code" not in ds.source_column_names
    assert "attachments" not in ds.source_column_names


def test_an_attachment_path_never_leaves_the_attachment_folder(tmp_path) -> None:
    from sapnhap.documents import copy_attachments

    folder = tmp_path / "dinh_kem"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("not an attachment")
    rows = pd.DataFrame({"_row_id": [0, 1, 2], "source_key": ["a", "b", "c"],
                         "attachment_paths": ["../secret.txt", str(tmp_path / "secret.txt"), "2024/khong_co.pdf"]})
    stored, unreadable = copy_attachments(None, "src", folder, rows)  # nothing readable: the bucket is not touched
    assert stored.empty
    assert unreadable["source_key"].tolist() == ["a", "b", "c"]
    assert "nằm ngoài thư mục" in unreadable["reason_vi"].iloc[0] and "nằm ngoài thư mục" in unreadable["reason_vi"].iloc[1]
    assert "Không tìm thấy tệp đính kèm '2024/khong_co.pdf'" in unreadable["reason_vi"].iloc[2]
