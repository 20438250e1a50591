"""Dry run of a new reference version against the records loaded in a real platform database."""

from __future__ import annotations

import psycopg
import pytest

from conftest import pg_url
from sapnhap.reference import load_reference
from sapnhap.reference.__main__ import main as reference_cli
from sapnhap.reference.impact import platform_impact

pytestmark = pytest.mark.integration


def _changed_old_code(old, new) -> str:
    """An old commune whose target code differs between the two versions (e.g. Ba Chẽ 06970 -> 06978)."""
    cols = ["old_commune_code", "new_commune_code"]
    a = old.crosswalk.loc[~old.crosswalk["is_split"] & (old.crosswalk["old_commune_code"] != ""), cols]
    b = new.crosswalk.loc[~new.crosswalk["is_split"] & (new.crosswalk["old_commune_code"] != ""), cols]
    both = a.merge(b, on="old_commune_code", suffixes=("_old", "_new"))
    diff = both[both["new_commune_code_old"] != both["new_commune_code_new"]]
    assert not diff.empty
    return str(diff["old_commune_code"].iloc[0])


def test_impact_counts_platform_records_that_would_change_unit(platform_dsn: str, capsys, monkeypatch) -> None:
    old, new = load_reference("nso-2025.07"), load_reference("vpd-2026.07")
    moved = _changed_old_code(old, new)
    with psycopg.connect(platform_dsn) as conn:
        for i, code in enumerate([moved, moved, "00703"]):
            conn.execute(
                """INSERT INTO core.households (household_code, old_commune_code, source_id, source_key, unit_scheme,
                   record_hash, batch_id) VALUES (%s, %s, 'src', %s, 'old', 'h', 'b')""",
                (f"HH{i}", code, str(i)),
            )
    report = platform_impact(platform_dsn, old, new)
    assert int(report["n_records"].sum()) == 3
    changed = report[report["n_changed"] > 0]
    assert int(changed["n_changed"].sum()) == 2
    before = old.crosswalk.loc[old.crosswalk["old_commune_code"] == moved, "new_commune_code"].iloc[0]
    assert changed.iloc[0]["previous_codes"] == before

    monkeypatch.setenv("SAPNHAP_PLATFORM_URL", "postgresql://placeholder")  # --platform-url wins
    assert reference_cli(["impact", "--from", "nso-2025.07", "--to", "vpd-2026.07", "--platform-url", pg_url(platform_dsn)]) == 0
    out = capsys.readouterr().out
    assert "2 / 3 bản ghi sẽ đổi đơn vị" in out
