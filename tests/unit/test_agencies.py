"""The agency crosswalk: documents re-mapped by the row in force on their own date; bad files named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sapnhap.agencies import AgencyCrosswalkError, load_agency_crosswalk, remap_agencies

HEADER = "old_agency_code,old_agency_name,new_agency_code,new_agency_name,valid_from,valid_to,note\n"
ROWS = (
    # The old district office is abolished on 2025-07-01: its documents go to the new commune's office.
    "H_VIXUYEN_VP,Văn phòng HĐND-UBND huyện Vị Xuyên,X_VIXUYEN_VP,Văn phòng HĐND-UBND xã Vị Xuyên,2020-01-01,2025-07-01,\n"
    "H_VIXUYEN_VP,Văn phòng HĐND-UBND huyện Vị Xuyên,T08_SNV,Sở Nội vụ tỉnh Tuyên Quang,2025-07-01,,hồ sơ lưu trữ\n"
    "HG_SGTVT,Sở Giao thông vận tải Hà Giang,T08_SXD,Sở Xây dựng tỉnh Tuyên Quang,2025-03-01,,sáp nhập sở\n"
)


def _crosswalk(tmp_path: Path, text: str = HEADER + ROWS) -> pd.DataFrame:
    path = tmp_path / "agencies_08.csv"
    path.write_text(text, encoding="utf-8")
    return load_agency_crosswalk(path)


def test_documents_are_remapped_by_the_row_in_force_on_their_date(tmp_path: Path):
    docs = pd.DataFrame({
        "document_no": ["12/UBND", "13/UBND", "5/SGTVT", "6/SGTVT", "7/XYZ", "8/?"],
        "issuer_code": ["H_VIXUYEN_VP", "H_VIXUYEN_VP", "HG_SGTVT", "HG_SGTVT", "NOWHERE", None],
        "issued_date": ["2025-06-30", "2025-07-01", "2025-02-28", "2025-03-01", "2025-05-05", "2025-05-05"],
    })
    out = remap_agencies(docs, _crosswalk(tmp_path), code_col="issuer_code", date_col="issued_date", prefix="issuer")
    assert out["issuer_new_agency_code"].tolist() == ["X_VIXUYEN_VP", "T08_SNV", None, "T08_SXD", None, None]
    assert out["issuer_agency_status"].tolist() == ["mapped", "mapped", "unknown", "mapped", "unknown", "missing"]
    assert out["document_no"].tolist() == docs["document_no"].tolist()  # order and rows kept


def test_two_rows_in_force_at_once_are_an_error_of_the_file(tmp_path: Path):
    text = HEADER + ROWS + "HG_SGTVT,Sở GTVT,T08_SGT,Sở GT,2025-06-01,,\n"
    with pytest.raises(AgencyCrosswalkError, match="line 5: old agency HG_SGTVT has two rows in force at once"):
        _crosswalk(tmp_path, text)


def test_bad_dates_and_missing_fields_name_line_and_field(tmp_path: Path):
    with pytest.raises(AgencyCrosswalkError, match="line 2, field valid_from: not a date"):
        _crosswalk(tmp_path, HEADER + "A,a,B,b,01/07/2025,,\n")
    with pytest.raises(AgencyCrosswalkError, match="line 2, field new_agency_code: empty"):
        _crosswalk(tmp_path, HEADER + "A,a,,b,2025-07-01,,\n")
    with pytest.raises(AgencyCrosswalkError, match="valid_to is not after valid_from"):
        _crosswalk(tmp_path, HEADER + "A,a,B,b,2025-07-01,2025-07-01,\n")
