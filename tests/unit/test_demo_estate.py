"""The demo's reporting systems and portals produce what the province publishes (R19, II.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sapnhap_dev.demo.estate import WEIGHTED_SPLIT, generate_estate, produce_estate_outputs, read_indicator_exports


def test_reporting_exports_and_portals_become_indicators_and_one_redirect_per_old_url(tmp_path: Path) -> None:
    files = generate_estate(tmp_path / "estate", seed=3, size=20)
    # One district tool writes VNI bytes: read back as Vietnamese, the values are those written.
    raw = [p for p in files.indicator_files if "/034/" in p.as_posix()][0].read_bytes()
    assert b"M\xe3 ch\xe6 ti\xf6u" not in raw and raw.decode("vni").startswith("Mã chỉ tiêu")
    values = read_indicator_exports(files.indicator_files)
    out = produce_estate_outputs(files, tmp_path / "out")
    assert sorted(out["files"]) == sorted([
        "indicators/2025-Q1/indicators_2025-Q1.csv", "indicators/2025-Q1/indicators_2025-Q1.json",
        "indicators/2025-Q2/indicators_2025-Q2.csv", "indicators/2025-Q2/indicators_2025-Q2.json",
        "portal/redirects.map", "portal/redirects.csv"])
    result = pd.read_csv(tmp_path / "out/indicators/2025-Q2/indicators_2025-Q2.csv", dtype={"new_commune_code": str})
    pop = result[(result["indicator_code"] == "DS_TONG") & (result["level"] == "commune")]
    # The split commune with declared weights is allocated; Thái Bình (02494), without weights, is not guessed.
    weighted = pop[pop["composition"].str.contains(WEIGHTED_SPLIT)]
    assert len(weighted) == 2 and (weighted["status"] == "ok").all()
    unweighted = pop[pop["composition"].str.contains("02494")]
    assert len(unweighted) and (unweighted["status"] == "cannot_allocate").all() and unweighted["value"].isna().all()
    # The province total of additive population is the sum of every old commune's value.
    total = result[(result["indicator_code"] == "DS_TONG") & (result["level"] == "province")]["value"].sum()
    q2 = values[(values["indicator_code"] == "DS_TONG") & (values["period"] == "2025-Q2")]
    assert total == q2["value"].astype(float).sum()
    # A ratio is recomputed from its parts, never averaged.
    ratio = result[(result["indicator_code"] == "TL_DUNG_HAN") & (result["level"] == "province")].iloc[0]
    parts = result[result["level"] == "province"].set_index("indicator_code")["value"]
    assert abs(ratio["value"] - 100 * parts["HS_DUNG_HAN"] / parts["HS_TIEP_NHAN"]) < 1e-6
    records = json.loads((tmp_path / "out/indicators/2025-Q2/indicators_2025-Q2.json").read_text())
    assert all(r["composition"] for r in records)
    # Every old portal URL redirects to exactly one live URL of the new units, in one hop.
    redirects = pd.read_csv(tmp_path / "out/portal/redirects.csv")
    pages = pd.concat([pd.read_csv(p) for p in files.portal_files])
    assert sorted(redirects["old_url"]) == sorted(pages["old_url"]) and redirects["old_url"].is_unique
    assert not set(redirects["new_url"]) & set(redirects["old_url"])
    nginx = (tmp_path / "out/portal/redirects.map").read_text()
    assert nginx.count('" "https://') == len(redirects)  # one line per old URL: "old" "new";
