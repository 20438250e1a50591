"""Dates proven by the data: a configured day/month order the values contradict is caught, by counts."""

from __future__ import annotations

import pandas as pd
import pytest

from sapnhap.dateproof import configured_order, date_evidence
from sapnhap.quality import profile_frame
from sapnhap.reference import load_reference
from sapnhap.sources import get_source
from sapnhap.transform import transform_frame

# dd/mm/yyyy as a Vietnamese system writes it: days 1..28 over several months.
DMY = [f"{d:02d}/{m:02d}/20{y:02d}" for d, m, y in zip(range(1, 29), [1, 3, 5, 7] * 7, [20, 21, 22, 23] * 7, strict=True)]


def test_format_orders() -> None:
    assert configured_order("%d/%m/%Y") == "day/month"
    assert configured_order("%m/%d/%Y %H:%M:%S") == "month/day"
    assert configured_order("%Y-%m-%d") is None and configured_order("%d %b %Y") is None


def test_month_day_configured_for_day_month_values_contradicts_with_counts() -> None:
    ev = date_evidence(pd.Series(DMY + [None, "", "abc"]), "%m/%d/%Y")
    days_over_12 = sum(1 for v in DMY if int(v[:2]) > 12)
    assert ev["problem"] == "contradicts"
    assert (ev["day_month_only"], ev["month_day_only"]) == (days_over_12, 0)
    assert ev["ambiguous"] == sum(1 for v in DMY if int(v[:2]) <= 12 and v[:2] != v[3:5])
    assert date_evidence(pd.Series(DMY), "%d/%m/%Y")["problem"] is None


def test_a_typo_or_two_does_not_block_but_a_pattern_does() -> None:
    typos = DMY + ["05/13/2024", "07/14/2024"]
    assert date_evidence(pd.Series(typos), "%d/%m/%Y")["problem"] is None
    pattern = DMY + [f"0{m}/{d}/2024" for m, d in zip(range(1, 8), range(13, 20), strict=True)]
    assert date_evidence(pd.Series(pattern), "%d/%m/%Y")["problem"] == "contradicts"
    # Without a configured format, a column mixing both orders is named too.
    assert date_evidence(pd.Series(pattern))["problem"] == "contradicts"
    assert date_evidence(pd.Series(DMY))["problem"] is None


def test_values_that_never_decide_the_order_are_unproven() -> None:
    undecided = [f"{d:02d}/{m:02d}/2024" for d in range(1, 13) for m in range(1, 4) if d != m]
    assert date_evidence(pd.Series(undecided), "%d/%m/%Y")["problem"] == "unproven"
    assert date_evidence(pd.Series(undecided[:5]), "%d/%m/%Y")["problem"] is None  # too few to say
    # One day's records (a nightly batch) repeat one date: not evidence of anything.
    assert date_evidence(pd.Series(["05/03/2024"] * 500), "%d/%m/%Y")["problem"] is None
    # Same day and month read the same either way: nothing to prove.
    assert date_evidence(pd.Series(["01/01/1950"] * 50), "%m/%d/%Y")["problem"] is None
    # ISO text cannot swap.
    assert date_evidence(pd.Series(["2024-03-05"] * 50), "%Y-%m-%d")["problem"] is None


def test_transform_reports_the_column_and_the_evidence_not_the_values() -> None:
    source = get_source("hg_vixuyen_motcua")
    mapping = source.datasets["dossiers"].model_copy(update={"date_format": "%m/%d/%Y"})
    source = source.model_copy(update={"datasets": {"dossiers": mapping}})
    n = len(DMY)
    raw = pd.DataFrame({
        "id": [str(i) for i in range(n)], "ma_ho_so": [f"HS{i}" for i in range(n)], "ma_thu_tuc": "1.001",
        "ten_thu_tuc": "Đăng ký khai sinh", "nguoi_nop": "Nguyễn Văn An", "so_cccd": "002090012345",
        "ma_xa": "00703", "dia_chi_chi_tiet": "Thôn Bản Mán", "ngay_nhan": DMY, "ngay_hen_tra": "02/02/2024",
        "ngay_tra": None, "trang_thai": "Đã tiếp nhận", "ngay_cap_nhat": "2024-02-01 10:00:00",
    })
    findings = transform_frame(raw, source, "dossiers", reference=load_reference()).date_findings
    assert [f["column"] for f in findings] == ["received_date"]
    (f,) = findings
    assert f["problem"] == "contradicts" and f["day_month_only"] > 0
    assert "received_date" in f["reason_vi"] and "%m/%d/%Y" in f["reason_vi"]
    assert not any(v in f["reason_vi"] for v in DMY)


@pytest.mark.parametrize(("fmt", "blocked"), [("%m/%d/%Y", True), ("%d/%m/%Y", False)])
def test_assessment_profile_names_the_date_column(fmt: str, blocked: bool) -> None:
    df = pd.DataFrame({"citizen_id": [f"0081900{i:05d}" for i in range(len(DMY))], "birth_date": DMY})
    profile = profile_frame(df, dataset="residents", code_column=None, date_formats={"birth_date": fmt})
    assert (profile["date_formats"]["birth_date"]["problem"] == "contradicts") is blocked
    assert any("birth_date" in f for f in profile["findings"]) is blocked


def test_one_bad_date_copied_to_a_household_is_one_piece_of_evidence() -> None:
    """A small batch is not blocked on a percentage of a handful of copies of one value.

    The demo's Yên Sơn residents (size 16): 35 values that can only be day/month, and one household's
    impossible registration date "01/13/2024" copied to its 4 members: 4 of 39 decisive rows (10%),
    but one distinct date, a typo that quarantines those 4 rows on its own.
    """
    household = DMY + ["01/13/2024"] * 4
    ev = date_evidence(pd.Series(household), "%d/%m/%Y")
    assert (ev["month_day_only"], ev["month_day_only_distinct"]) == (4, 1)
    assert ev["problem"] is None
    # Three different dates that read only as month/day are a pattern, even in a small batch.
    three = DMY + ["01/13/2024", "02/14/2024", "03/15/2024"]
    assert date_evidence(pd.Series(three), "%d/%m/%Y")["problem"] == "contradicts"
    # A column written month/day throughout (the configured order is wrong) is caught in a batch of 5 rows.
    swapped = ["01/13/2024", "02/14/2024", "03/15/2024", "04/16/2024", "05/17/2024"]
    assert date_evidence(pd.Series(swapped), "%d/%m/%Y")["problem"] == "contradicts"
    # Below the minimum distinct count nothing blocks, whatever the share.
    assert date_evidence(pd.Series(["01/13/2024", "02/14/2024"] * 10), "%d/%m/%Y")["problem"] is None
