"""Date formats proven by the data, not assumed from the source file.

A numeric date such as 05/04/2024 reads as 5 April under ``%d/%m/%Y`` and as 4 May under
``%m/%d/%Y``: with the wrong one configured, every date whose day is 12 or less loads with day
and month swapped, silently (the others fail to parse). The values themselves carry the
evidence: a first number above 12 can only be a day, a second number above 12 only a day too.
This module counts that evidence per column (counts only, never values) and says when a column
contradicts its configured order or cannot prove any order.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

DAY_MONTH = "day/month"
MONTH_DAY = "month/day"
# The minimum sample. Evidence against an order is counted in *distinct* dates: one mistyped value
# copied to every member of a household, or repeated by one operator, is one piece of evidence however
# many rows carry it. Below MIN_CONTRADICTING distinct contradicting dates nothing is blocked, whatever
# the share: those rows cannot be read in the configured order and are quarantined on their own, and a
# small batch is never blocked on a percentage of a handful of rows. At or above it, the contradicting
# rows must also be at least CONTRADICTING_SHARE of the decisive rows; the share only decides once
# MIN_CONTRADICTING / CONTRADICTING_SHARE = 60 decisive rows are in the batch (below that the distinct
# minimum is the stricter rule). A wrongly configured order contradicts every value whose day is
# above 12 (tens of distinct dates in any real batch) and is still caught in a batch of five rows.
MIN_CONTRADICTING = 3
CONTRADICTING_SHARE = 0.05
# This many distinct day/month pairs that read differently under both orders, and none that
# decides: unproven. Distinct, because one day's records all carry the same date.
MIN_AMBIGUOUS = 20

_NUMERIC_DATE = r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})(?:$|[\sT])"
_ORDER_VI = {DAY_MONTH: "ngày/tháng/năm", MONTH_DAY: "tháng/ngày/năm"}


def configured_order(fmt: str | None) -> str | None:
    """``day/month`` or ``month/day`` when ``fmt`` starts with day and month numbers, else None."""
    if not fmt:
        return None
    codes = re.findall(r"%-?([a-zA-Z])", fmt)
    if len(codes) < 2 or {codes[0].lower(), codes[1].lower()} != {"d", "m"} or "b" in "".join(codes).lower():
        return None
    return DAY_MONTH if codes[0].lower() == "d" else MONTH_DAY


def date_evidence(values: pd.Series, fmt: str | None = None) -> dict[str, Any]:
    """Counts of what the numeric dates in ``values`` allow, and the verdict against ``fmt``.

    Returns ``numeric`` (values shaped nn/nn/yyyy), ``day_month_only`` (first number > 12),
    ``month_day_only`` (second number > 12), ``neither`` (both > 12), ``ambiguous`` (both <= 12
    and different, so the order changes the date), ``*_distinct`` (distinct dates behind those
    counts), ``configured`` (the order ``fmt`` gives) and ``problem``: None, ``contradicts`` or
    ``unproven`` (rules above ``MIN_CONTRADICTING``). Vectorized; no value is returned.
    """
    return evidence_from(date_tally(values), fmt)


def date_tally(values: pd.Series) -> dict[str, Any]:
    """What :func:`date_evidence` weighs, in a form chunks of one batch add up (:func:`add_tallies`):
    the counts, and the sets of distinct dates behind them (bounded by the calendar, not the rows)."""
    text = values.astype("object").where(values.notna(), None).dropna().astype(str).str.strip()
    parts = text.str.extract(_NUMERIC_DATE).dropna()
    first = pd.to_numeric(parts[0], errors="coerce")
    second = pd.to_numeric(parts[1], errors="coerce")
    valid = (first >= 1) & (second >= 1)
    first, second = first[valid], second[valid]
    undecided = (first <= 12) & (second <= 12) & (first != second)
    year = parts[2].loc[first.index]
    dm_only, md_only = (first > 12) & (second <= 12), (second > 12) & (first <= 12)
    return {
        "numeric": int(len(first)),
        "day_month_only": int(dm_only.sum()),
        "month_day_only": int(md_only.sum()),
        "neither": int(((first > 12) & (second > 12)).sum()),
        "ambiguous": int(undecided.sum()),
        # Distinct (day, month) pairs: a nightly batch of one day's records repeats one date many times.
        "ambiguous_set": set(zip(first[undecided], second[undecided], strict=True)),
        # Distinct dates (day, month, year as written) behind each count: the evidence the verdict weighs.
        "day_month_only_set": _distinct_set(first, second, year, dm_only),
        "month_day_only_set": _distinct_set(first, second, year, md_only),
    }


def add_tallies(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """The tally of two chunks of one column: counts added, distinct dates united."""
    if a is None:
        return b
    return {k: (a[k] | b[k]) if isinstance(a[k], set) else a[k] + b[k] for k in a}


def evidence_from(tally: dict[str, Any], fmt: str | None = None) -> dict[str, Any]:
    """The evidence and the verdict of :func:`date_evidence` from a (possibly added-up) tally."""
    day_month_only, month_day_only = tally["day_month_only"], tally["month_day_only"]
    evidence: dict[str, Any] = {
        "numeric": tally["numeric"],
        "day_month_only": day_month_only,
        "month_day_only": month_day_only,
        "neither": tally["neither"],
        "ambiguous": tally["ambiguous"],
        "ambiguous_distinct": len(tally["ambiguous_set"]),
        "day_month_only_distinct": len(tally["day_month_only_set"]),
        "month_day_only_distinct": len(tally["month_day_only_set"]),
        "configured": configured_order(fmt),
        "problem": None,
    }
    if fmt and not evidence["configured"]:
        return evidence  # an ISO or named-month format: day and month cannot swap
    decisive = day_month_only + month_day_only
    orders = [evidence["configured"]] if evidence["configured"] else [DAY_MONTH, MONTH_DAY]
    distinct = {DAY_MONTH: evidence["day_month_only_distinct"], MONTH_DAY: evidence["month_day_only_distinct"]}
    for order in orders:
        against = month_day_only if order == DAY_MONTH else day_month_only
        other = MONTH_DAY if order == DAY_MONTH else DAY_MONTH
        if distinct[other] >= MIN_CONTRADICTING and against >= CONTRADICTING_SHARE * decisive:
            # With no configured order, this is a column mixing both orders.
            if evidence["configured"] or min(distinct.values()) >= MIN_CONTRADICTING:
                evidence["problem"] = "contradicts"
    if evidence["problem"] is None and decisive == 0 and evidence["ambiguous_distinct"] >= MIN_AMBIGUOUS:
        evidence["problem"] = "unproven"
    return evidence


def _distinct_set(first: pd.Series, second: pd.Series, year: pd.Series, mask: pd.Series) -> set:
    return set(zip(first[mask], second[mask], year[mask], strict=True))


def finding_vi(column: str, fmt: str | None, ev: dict[str, Any]) -> str:
    """One Vietnamese sentence naming the column and the evidence (counts only)."""
    counts = (
        f"{ev['day_month_only']} giá trị chỉ đọc được theo {_ORDER_VI[DAY_MONTH]}, "
        f"{ev['month_day_only']} giá trị chỉ đọc được theo {_ORDER_VI[MONTH_DAY]}, "
        f"{ev['ambiguous']} giá trị đọc được cả hai cách"
    )
    if ev["problem"] == "contradicts" and ev["configured"]:
        return (
            f"Cột {column}: định dạng ngày khai báo ({fmt}, {_ORDER_VI[ev['configured']]}) mâu thuẫn với dữ liệu: "
            f"{counts}. Nạp theo định dạng này sẽ đảo ngày và tháng; sửa date_format/timestamp_format."
        )
    if ev["problem"] == "contradicts":
        return f"Cột {column}: dữ liệu trộn hai kiểu ngày: {counts}."
    return (
        f"Cột {column}: không chứng minh được thứ tự ngày/tháng: {counts}, không giá trị nào phân định. "
        "Kiểm tra với đơn vị quản lý hệ thống cũ rồi khai báo date_format."
    )


def date_findings(frame: pd.DataFrame, formats: dict[str, str | None]) -> list[dict[str, Any]]:
    """One finding per column of ``formats`` (column -> configured format) whose dates are not proven."""
    return findings_from({c: date_tally(frame[c]) for c in formats if c in frame.columns}, formats)


def findings_from(tallies: dict[str, dict[str, Any]], formats: dict[str, str | None]) -> list[dict[str, Any]]:
    """:func:`date_findings` from the (added-up) tallies of the columns, e.g. of a batch read in chunks."""
    out = []
    for column, fmt in formats.items():
        if column not in tallies:
            continue
        ev = evidence_from(tallies[column], fmt)
        if ev["problem"]:
            out.append({"column": column, "format": fmt, **ev, "reason_vi": finding_vi(column, fmt, ev)})
    return out
