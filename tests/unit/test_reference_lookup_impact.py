"""CLI lookup (old -> new, new -> old, by name) and the dry-run impact report."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from sapnhap.reference import load_reference  # noqa: E402
from sapnhap.reference.__main__ import main  # noqa: E402
from sapnhap.reference.impact import impact_report  # noqa: E402


def test_lookup_old_and_new_26740(capsys):
    main(["lookup", "26740", "--scheme", "old"])
    out = capsys.readouterr().out
    assert "Mã cũ 26740: Phường Bến Nghé, Quận 1" in out and "→ Phường Sài Gòn (26740)" in out
    main(["lookup", "26740", "--scheme", "new"])
    out = capsys.readouterr().out
    assert out.startswith("Mã mới 26740: Phường Sài Gòn") and "Phường Bến Nghé" in out and "Phường Đa Kao" in out


def test_lookup_split_and_name(capsys):
    main(["lookup", "00634", "--scheme", "old"])
    assert "TÁCH về 5 đơn vị" in capsys.readouterr().out
    main(["lookup", "ben nghe"])
    assert "Phường Bến Nghé" in capsys.readouterr().out
    main(["lookup", "Không Có Xã Này"])
    assert "Không tìm thấy" in capsys.readouterr().out


def test_impact_report_between_versions():
    nso, vpd = load_reference("nso-2025.07"), load_reference("vpd-2026.07")
    records = pd.DataFrame({"old_commune_code": ["06970"] * 3 + ["06973", "00004", "00634"]})
    report = impact_report(nso, vpd, records)
    top = report.iloc[0]
    assert (top["new_commune_code"], top["n_records"], top["n_changed"], top["previous_codes"]) == ("06978", 4, 4, "06970")
    assert top["new_commune_name"] == "Xã Ba Chẽ"
    unchanged = report.set_index("new_commune_code").loc["00004"]
    assert (unchanged["n_records"], unchanged["n_changed"]) == (1, 0)
    assert report["n_records"].sum() == len(records)
    assert report.attrs == {"from_version": "nso-2025.07", "to_version": "vpd-2026.07"}
