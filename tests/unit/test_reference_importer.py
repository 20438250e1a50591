"""The importer: parsing helpers, and reproducing the committed dataset from the raw files."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "include"))

from sapnhap.reference import DATA_DIR  # noqa: E402
from sapnhap.reference.importer import (  # noqa: E402
    apply_errata,
    normalize_note,
    pad_code,
    read_new_units_sql,
    run,
    split_name_code,
)

RAW = ROOT.parent / "shared" / "reference"
RAW_FILES = {
    "nso": RAW / "nso_bang_chuyen_doi_dvhc_2025.xlsx",
    "old": RAW / "old_units_2025-01-04.csv",
    "new": RAW / "new_units_2026-07.sql",
}
needs_raw = pytest.mark.skipif(
    not all(p.exists() for p in RAW_FILES.values()),
    reason=f"raw reference files not found beside the repo ({RAW}); CI has them in ../shared/reference",
)


def test_pad_code():
    assert pad_code(1558, 5) == "01558"
    assert pad_code("1558", 5) == "01558"
    assert pad_code(1558.0, 5) == "01558"
    assert pad_code(" 26740 ", 5) == "26740"
    assert pad_code(None, 5) is None
    with pytest.raises(ValueError):
        pad_code("12a", 5)


def test_split_name_code():
    assert split_name_code("Thành phố Hà Nội (01)") == ("Thành phố Hà Nội", "01")
    assert split_name_code("  Quận  Ba Đình (001) ") == ("Quận Ba Đình", "001")
    assert split_name_code(None) == (None, None)
    with pytest.raises(ValueError):
        split_name_code("Hà Nội")


def test_normalize_note():
    assert normalize_note("Nhập một phần\n") == "Nhập một phần"
    assert normalize_note("Nhập một  phần") == "Nhập một phần"
    assert normalize_note("Nhâp một phần diện tích") == "Nhập một phần diện tích"
    assert normalize_note("Nhập một phần  diện tích") == "Nhập một phần diện tích"
    assert normalize_note("Giữ nguyên ") == "Giữ nguyên"
    assert normalize_note(None) is None


def test_errata_refuse_a_different_match_count():
    rows = pd.DataFrame(
        {"old_commune_code": ["00001"], "old_commune_name": ["Xã A"], "old_province_code": ["01"]}
    )
    errata = [
        {
            "id": "X1",
            "what": "w",
            "reason": "r",
            "action": {"kind": "set", "match": {"old_commune_code": "00002"}, "set": {"old_province_code": "02"},
                       "expected_matches": 1},
        }
    ]  # fmt: skip
    with pytest.raises(ValueError, match="matched 0 rows"):
        apply_errata(rows, errata)


def test_committed_files_match_their_provenance():
    for version_dir in DATA_DIR.iterdir():
        if not version_dir.is_dir():
            continue
        provenance = json.loads((version_dir / "provenance.json").read_text(encoding="utf-8"))
        assert provenance["version"] == version_dir.name
        assert all(len(s["sha256"]) == 64 for s in provenance["sources"])
        assert provenance["importer"]["imported_at"]
        for name, meta in provenance["files"].items():
            raw = gzip.decompress((version_dir / name).read_bytes())
            assert hashlib.sha256(raw).hexdigest() == meta["csv_sha256"]
            assert raw.count(b"\n") == meta["rows"] + 1


@needs_raw
def test_sql_parser_reads_every_unit():
    provinces, wards = read_new_units_sql(RAW_FILES["new"])
    assert len(provinces) == 34
    assert len(wards) == 3_321
    assert "Xã Ea H'Leo" in set(wards["full_name"])


@needs_raw
def test_importer_reproduces_the_committed_dataset(tmp_path):
    committed = json.loads((DATA_DIR / "nso-2025.07" / "provenance.json").read_text(encoding="utf-8"))
    imported_at = committed["importer"]["imported_at"]
    run(RAW_FILES["nso"], RAW_FILES["old"], RAW_FILES["new"], tmp_path, import_date=imported_at)
    for version_dir in DATA_DIR.iterdir():
        if not version_dir.is_dir():
            continue
        for path in version_dir.iterdir():
            rebuilt = tmp_path / version_dir.name / path.name
            assert rebuilt.read_bytes() == path.read_bytes(), f"{version_dir.name}/{path.name} differs"
    assert json.loads((tmp_path / "versions.json").read_text()) == json.loads((DATA_DIR / "versions.json").read_text())


@needs_raw
def test_importer_refuses_to_change_an_existing_version(tmp_path):
    run(RAW_FILES["nso"], RAW_FILES["old"], RAW_FILES["new"], tmp_path, import_date="2026-01-01")
    target = tmp_path / "nso-2025.07" / "provenance.json"
    provenance = json.loads(target.read_text(encoding="utf-8"))
    provenance["files"]["crosswalk.csv.gz"]["rows"] = 1
    target.write_text(json.dumps(provenance), encoding="utf-8")
    with pytest.raises(FileExistsError, match="new version id"):
        run(RAW_FILES["nso"], RAW_FILES["old"], RAW_FILES["new"], tmp_path, import_date="2026-01-01")
