"""Helper columns for cross-column and grouped checks, derived with vectorized pandas.

GX column-map expectations look at one column (or a pair) at a time. Checks that need the
unit registry, a person's birth year or the previous processing step are turned into plain
columns here, so the suite can express them with standard expectations. Every helper is
missing (``<NA>``) where the check does not apply, which GX skips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sapnhap.datasets import Dataset
from sapnhap.quality.suites import (
    H_NEW_IN_FORCE,
    H_OLD_IN_REGISTRY,
    H_PREV_STEP_STARTED,
    RAW_SUFFIX,
    h_cccd,
)

MERGER_DATE = pd.Timestamp("2025-07-01")

# GSO codes of the 63 provinces before 2025-07-01. The 34 provinces after it kept the code of
# one of their predecessors, so '0' + these are every valid CCCD province-of-birth prefix.
# Used only when no registry is given; the reference registry wins when it is.
OLD_PROVINCE_CODES: tuple[str, ...] = (
    "01", "02", "04", "06", "08", "10", "11", "12", "14", "15", "17", "19", "20", "22", "24",
    "25", "26", "27", "30", "31", "33", "34", "35", "36", "37", "38", "40", "42", "44", "45",
    "46", "48", "49", "51", "52", "54", "56", "58", "60", "62", "64", "66", "67", "68", "70",
    "72", "74", "75", "77", "79", "80", "82", "83", "84", "86", "87", "89", "91", "92", "93",
    "94", "95", "96",
)
DEFAULT_PROVINCE_PREFIXES: frozenset[str] = frozenset("0" + c for c in OLD_PROVINCE_CODES)


@dataclass
class Registry:
    """What the registry checks compare against; None means the check is skipped.

    ``new_units`` (optional) holds rows of new communes with ``code``, ``valid_from`` and
    ``valid_to`` (inclusive ISO dates, empty = open) for the as-of-date check.
    """

    new_codes: frozenset[str] | None = None
    old_codes: frozenset[str] | None = None
    province_prefixes: frozenset[str] | None = None
    new_units: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def available(self) -> set[str]:
        out = set()
        if self.new_codes is not None or self.new_units is not None:
            out.add("new_codes")
        if self.old_codes is not None:
            out.add("old_codes")
        if self.province_prefixes is not None:
            out.add("province_prefixes")
        return out


def registry_from(
    *,
    valid_new_codes: set[str] | None,
    valid_old_codes: set[str] | None,
    valid_province_prefixes: set[str] | None,
    reference: Any = None,
) -> Registry:
    """Combine explicit code sets with an optional ``sapnhap.reference.Reference``.

    Explicit sets win; the reference fills the gaps; province prefixes fall back to
    :data:`DEFAULT_PROVINCE_PREFIXES`.
    """
    new_codes = frozenset(valid_new_codes) if valid_new_codes is not None else None
    old_codes = frozenset(valid_old_codes) if valid_old_codes is not None else None
    prefixes = frozenset(valid_province_prefixes) if valid_province_prefixes is not None else None
    new_units = None
    if reference is not None:
        new = reference.new_units
        old = reference.old_units
        if new_codes is None:
            new_units = new.loc[new["level"] == "commune", ["code", "valid_from", "valid_to"]]
        if old_codes is None:
            old_codes = frozenset(old.loc[old["level"] == "commune", "code"].dropna())
        if prefixes is None:
            provinces = pd.concat([old.loc[old["level"] == "province", "code"], new.loc[new["level"] == "province", "code"]])
            prefixes = frozenset("0" + provinces.dropna().astype(str))
    if prefixes is None:
        prefixes = DEFAULT_PROVINCE_PREFIXES
    return Registry(new_codes=new_codes, old_codes=old_codes, province_prefixes=prefixes, new_units=new_units)


def referenced_columns(expectation: dict) -> set[str]:
    """Every column an expectation (suite JSON dict) reads, its row condition included."""
    kw = expectation["kwargs"]
    cols = {kw[k] for k in ("column", "column_A", "column_B") if k in kw}
    cols |= set(kw.get("column_list") or [])

    def walk(cond: dict | None) -> None:
        if not cond:
            return
        if "conditions" in cond:
            for c in cond["conditions"]:
                walk(c)
        elif "column" in cond:
            cols.add(cond["column"]["name"])

    walk(kw.get("row_condition"))
    return cols


def _text(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), None).astype("string")


def _bool(values: pd.Series, applies: pd.Series | np.ndarray) -> pd.Series:
    """A nullable boolean column: ``values`` where the check applies, <NA> elsewhere."""
    out = pd.Series(pd.array(np.asarray(values, dtype=bool), dtype="boolean"), index=values.index)
    return out.where(np.asarray(applies, dtype=bool), pd.NA)


def _as_of(record_date: pd.Series) -> pd.Series:
    """The date a new code must be in force: the record date, but not before the merger."""
    dates = pd.to_datetime(record_date, errors="coerce")
    return dates.where(dates.isna() | (dates >= MERGER_DATE), MERGER_DATE)


def new_code_in_force(codes: pd.Series, record_date: pd.Series, registry: Registry) -> pd.Series:
    """True where the new commune code is a registry unit in force on the record date."""
    text = _text(codes)
    if registry.new_units is None:
        return text.isin(registry.new_codes or frozenset()).fillna(False).astype(bool)
    units = registry.new_units
    valid_from = pd.to_datetime(units["valid_from"], errors="coerce").fillna(pd.Timestamp.min)
    valid_to = pd.to_datetime(units["valid_to"], errors="coerce").fillna(pd.Timestamp.max)
    periods = pd.DataFrame({"code": units["code"].astype(str).to_numpy(), "vf": valid_from.to_numpy(), "vt": valid_to.to_numpy()})
    left = pd.DataFrame({"pos": np.arange(len(text)), "code": text.to_numpy(dtype=object), "asof": _as_of(record_date).to_numpy()})
    joined = left.merge(periods, on="code", how="inner")
    # No record date: any period of the code will do; the record-date checks report the date.
    ok = joined["asof"].isna() | ((joined["vf"] <= joined["asof"]) & (joined["asof"] <= joined["vt"]))
    good = np.zeros(len(text), dtype=bool)
    good[joined.loc[ok.to_numpy(), "pos"].to_numpy(dtype=int)] = True
    return pd.Series(good, index=codes.index)


def add_helper_columns(
    df: pd.DataFrame, ds: Dataset, suite: dict, registry: Registry
) -> tuple[pd.DataFrame, list[str]]:
    """Return a copy of ``df`` with every helper column the suite needs, and their names.

    Missing ``<col>__raw`` columns (the transform adds them only when a value failed to
    parse) are added empty so the row conditions that mention them can run.
    """
    needed: set[str] = set()
    for exp in suite["expectations"]:
        needed |= referenced_columns(exp)
    out = df.copy(deep=False)
    added: list[str] = []

    def put(name: str, values: pd.Series | Any) -> None:
        out[name] = values
        added.append(name)

    for name in sorted(needed):
        base = name[: -len(RAW_SUFFIX)] if name.endswith(RAW_SUFFIX) else None
        if base is not None and name not in out.columns:
            put(name, pd.Series(None, index=out.index, dtype="object"))

    record_date = out[ds.record_date] if ds.record_date in out.columns else pd.Series(pd.NaT, index=out.index)

    if H_NEW_IN_FORCE in needed and {"new_commune_code", "mapping_status"} <= set(out.columns):
        mapped = (_text(out["mapping_status"]) == "mapped").fillna(False).astype(bool)
        if "new_codes" in registry.available:
            ok = new_code_in_force(out["new_commune_code"], record_date, registry)
        else:
            ok = pd.Series(True, index=out.index)
        put(H_NEW_IN_FORCE, _bool(ok, mapped))

    if H_OLD_IN_REGISTRY in needed and "old_commune_code" in out.columns:
        codes = _text(out["old_commune_code"])
        ok = codes.isin(registry.old_codes or frozenset()).fillna(False).astype(bool)
        put(H_OLD_IN_REGISTRY, _bool(ok, codes.notna().to_numpy()))

    for column in ("citizen_id", "applicant_citizen_id", "head_citizen_id"):
        if h_cccd(column, "province_known") not in needed or column not in out.columns:
            continue
        ids = _text(out[column])
        well_formed = ids.str.fullmatch(r"\d{12}").fillna(False).astype(bool)
        prefixes = registry.province_prefixes or frozenset()
        put(h_cccd(column, "province_known"), _bool(ids.str.slice(0, 3).isin(prefixes).fillna(False), well_formed))
        if h_cccd(column, "gender_digit") in needed and {"gender", "birth_date"} <= set(out.columns):
            digits = ids.where(well_formed)
            put(h_cccd(column, "gender_digit"), pd.to_numeric(digits.str.slice(3, 4), errors="coerce").astype("Int64"))
            put(h_cccd(column, "year_digits"), pd.to_numeric(digits.str.slice(4, 6), errors="coerce").astype("Int64"))
            year = pd.to_datetime(out["birth_date"], errors="coerce").dt.year.astype("Int64")
            century = pd.Series(pd.NA, index=out.index, dtype="Int64")
            in_1900s = ((year >= 1900) & (year <= 1999)).fillna(False).astype(bool)
            in_2000s = ((year >= 2000) & (year <= 2099)).fillna(False).astype(bool)
            century = century.mask(in_1900s, 0).mask(in_2000s, 2)
            gender = _text(out["gender"])
            female = pd.Series(pd.NA, index=out.index, dtype="Int64")
            female = female.mask((gender == "nam").fillna(False).astype(bool), 0)
            female = female.mask((gender == "nu").fillna(False).astype(bool), 1)
            put(h_cccd(column, "expected_gender_digit"), century + female)
            put(h_cccd(column, "expected_year_digits"), year % 100)

    # A processing history (dossier or document steps): the parent's key, then the step's time.
    parent_key, step_time = (ds.natural_key[0], ds.record_date) if ds.parent else ("dossier_code", "started_at")
    if H_PREV_STEP_STARTED in needed and {parent_key, "step_no", step_time} <= set(out.columns):
        started = pd.to_datetime(out[step_time], errors="coerce")
        order = pd.DataFrame({"d": _text(out[parent_key]), "n": pd.to_numeric(out["step_no"], errors="coerce"), "s": started})
        order = order.sort_values(["d", "n"], kind="stable")
        prev = order.groupby("d", sort=False, dropna=True)["s"].shift(1)
        put(H_PREV_STEP_STARTED, prev.reindex(out.index))

    if ds.name == "indicator_values":
        from sapnhap.indicators import indicator_helper_columns

        for name, values in indicator_helper_columns(out, needed).items():
            put(name, values)
    if ds.name == "portal_pages":
        from sapnhap.portal import page_helper_columns

        for name, values in page_helper_columns(out, needed).items():
            put(name, values)

    if ds.name == "documents":
        from sapnhap.documents import document_helper_columns

        for name, values in document_helper_columns(out, needed).items():
            put(name, values)

    return out, added
