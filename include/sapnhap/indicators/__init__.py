"""Report indicators of the old units re-aggregated to the new communes and provinces (R19).

The legacy reporting systems hold indicator values per old commune and period (population,
dossiers received, dossiers resolved on time, ...). The national reporting system needs them per
new commune and new province. How a value moves depends on the indicator's kind, declared in the
catalogue (``catalogue.yaml``):

- ``additive``: values of old communes merged into one new commune are summed. A split commune's
  value is allocated to its new communes only by weights the province declares (share of
  population or area); without weights the new commune's value is "cannot be allocated"
  (``status = "cannot_allocate"``, ``value`` empty), never guessed. A province total needs no
  weights when every new commune of a split lies in the same new province.
- ``ratio``: recomputed from the re-aggregated numerator and denominator, never averaged.
- ``non_additive`` (a median, a rank): carried only where a new unit is exactly one whole old unit;
  otherwise ``status = "cannot_aggregate"``.

Every output value carries its composition: the old units, their values and weights, and the
crosswalk version.

    catalogue = load_catalogue()
    weights = load_weights(path)                      # optional, per province
    out = reaggregate(values, ref, catalogue, weights)
    export_period(out, "2025-Q3", folder)            # CSV + JSON, new unit codes
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml

from sapnhap.reference import Reference

CATALOGUE_PATH = Path(__file__).with_name("catalogue.yaml")
WEIGHT_TOLERANCE = 1e-6
VALUE_COLUMNS = ["indicator_code", "period", "old_commune_code", "value"]
WEIGHT_COLUMNS = ["old_commune_code", "new_commune_code", "weight", "basis"]
OUTPUT_COLUMNS = [
    "indicator_code", "period", "level", "new_province_code", "new_commune_code", "value", "status", "composition",
]

Kind = Literal["additive", "ratio", "non_additive"]
Status = Literal["ok", "cannot_allocate", "cannot_aggregate", "missing_input"]


class IndicatorError(ValueError):
    """A catalogue, weights file or input that cannot be used; the message names file and field."""


@dataclass(frozen=True)
class Indicator:
    code: str
    name: str
    unit: str
    kind: Kind
    numerator: str | None = None
    denominator: str | None = None
    scale: float = 1.0


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Indicator]:
    """The declarative indicator catalogue: code -> :class:`Indicator`; ratio parts must be additive."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, Indicator] = {}
    for i, item in enumerate(raw.get("indicators", [])):
        where = f"{path.name}: indicators[{i}]"
        kind = item.get("kind")
        if kind not in ("additive", "ratio", "non_additive"):
            raise IndicatorError(f"{where}.kind: {kind!r} is not additive, ratio or non_additive")
        for key in ("code", "name", "unit"):
            if not item.get(key):
                raise IndicatorError(f"{where}.{key}: missing")
        if kind == "ratio" and not (item.get("numerator") and item.get("denominator")):
            raise IndicatorError(f"{where}: a ratio needs numerator and denominator")
        out[item["code"]] = Indicator(
            code=item["code"], name=item["name"], unit=item["unit"], kind=kind,
            numerator=item.get("numerator"), denominator=item.get("denominator"), scale=float(item.get("scale", 1.0)),
        )
    for ind in out.values():
        for part in (ind.numerator, ind.denominator):
            if part is not None and (part not in out or out[part].kind != "additive"):
                raise IndicatorError(f"{path.name}: {ind.code}: {part!r} must be an additive indicator of the catalogue")
    return out


# Rounding a legacy tool may apply to a ratio it stores: half a percent of the scale.
RATIO_TOLERANCE = 0.005
H_VALUE_NUMBER = "_q_value_number"
H_RATIO_CONSISTENT = "_q_ratio_consistent"


def indicator_helper_columns(df: pd.DataFrame, needed: set[str],
                             catalogue: dict[str, Indicator] | None = None) -> dict[str, pd.Series]:
    """The quality stage's helper columns of indicator values (``sapnhap.quality.helpers``).

    ``_q_value_number``: the value as a number (NaN when it is not one: its own check reports it).
    ``_q_ratio_consistent``: for a ratio indicator with numeric parts, whether value equals
    numerator / denominator x scale within :data:`RATIO_TOLERANCE` of the scale, with a positive
    denominator and, for a percentage or share (scale 1 or 100), a numerator not above it; empty
    for other rows (nothing to compare).
    """
    out: dict[str, pd.Series] = {}
    value = pd.to_numeric(df["value"], errors="coerce") if "value" in df else pd.Series(float("nan"), index=df.index)
    if H_VALUE_NUMBER in needed:
        out[H_VALUE_NUMBER] = value.astype(float)
    if H_RATIO_CONSISTENT in needed and {"indicator_code", "numerator", "denominator"} <= set(df.columns):
        catalogue = catalogue if catalogue is not None else load_catalogue()
        scale = df["indicator_code"].map(lambda c: catalogue[c].scale if c in catalogue and catalogue[c].kind == "ratio"
                                         else float("nan")).astype(float)
        num = pd.to_numeric(df["numerator"], errors="coerce")
        den = pd.to_numeric(df["denominator"], errors="coerce")
        applies = scale.notna() & num.notna() & den.notna() & value.notna()
        expected = num / den.where(den > 0) * scale
        ok = (den > 0) & (num >= 0) & ((expected - value).abs() <= RATIO_TOLERANCE * scale)
        ok &= ~scale.isin([1.0, 100.0]) | (num <= den)
        out[H_RATIO_CONSISTENT] = pd.Series(pd.array(ok.fillna(False).to_numpy(dtype=bool), dtype="boolean"),
                                            index=df.index).where(applies, pd.NA)
    return out


def load_weights(path: Path) -> pd.DataFrame:
    """A province's allocation weights for split communes (CSV: old_commune_code, new_commune_code, weight, basis).

    The weights of one old commune must sum to 1: a partial declaration is an error, not a guess.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in WEIGHT_COLUMNS if c not in frame.columns]
    if missing:
        raise IndicatorError(f"{path.name}: missing columns {missing}")
    weights = pd.to_numeric(frame["weight"], errors="coerce")
    bad = frame.index[weights.isna() | (weights < 0) | (weights > 1)]
    if len(bad):
        raise IndicatorError(f"{path.name}: line {int(bad[0]) + 2}, field weight: not a number between 0 and 1")
    frame = frame.assign(weight=weights)
    sums = frame.groupby("old_commune_code")["weight"].sum()
    off = sums[(sums - 1).abs() > WEIGHT_TOLERANCE]
    if len(off):
        raise IndicatorError(f"{path.name}: weights of old commune {off.index[0]} sum to {off.iloc[0]:.4f}, not 1")
    return frame[WEIGHT_COLUMNS]


def _pairs(ref: Reference, weights: pd.DataFrame | None) -> pd.DataFrame:
    """(old commune, new commune) pairs with the declared weight (1 when not split, NaN when split and undeclared)."""
    pairs = ref.crosswalk.loc[
        ref.crosswalk["old_unit_level"] == "commune",
        ["old_commune_code", "new_commune_code", "new_province_code", "is_split"],
    ].drop_duplicates(["old_commune_code", "new_commune_code"])
    if weights is not None and len(weights):
        known = pairs.merge(weights[["old_commune_code", "new_commune_code"]], how="right", indicator=True)
        stray = known[known["_merge"] == "right_only"]
        if len(stray):
            row = stray.iloc[0]
            raise IndicatorError(
                f"weights: {row['old_commune_code']} -> {row['new_commune_code']} is not a pair of crosswalk {ref.version}"
            )
        pairs = pairs.merge(weights[["old_commune_code", "new_commune_code", "weight", "basis"]], how="left")
    else:
        pairs = pairs.assign(weight=float("nan"), basis=None)
    pairs.loc[~pairs["is_split"].astype(bool), ["weight", "basis"]] = [1.0, "whole"]
    return pairs


def _composition(parts: pd.DataFrame, version: str) -> str:
    items = [
        {"old_commune_code": r.old_commune_code, "value": _num(r.value), "weight": _num(r.weight), "basis": r.basis}
        for r in parts.itertuples(index=False)
    ]
    return json.dumps({"crosswalk_version": version, "parts": items}, ensure_ascii=False, sort_keys=True)


def _num(value: object) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _additive(values: pd.DataFrame, pairs: pd.DataFrame, version: str) -> pd.DataFrame:
    """Sum per new commune and per new province; unweighted split parts make the commune unallocatable."""
    parts = values.merge(pairs, on="old_commune_code", how="inner")
    parts["share"] = parts["value"] * parts["weight"]
    rows = []
    for (code, period, commune, province), group in parts.groupby(
        ["indicator_code", "period", "new_commune_code", "new_province_code"], sort=True
    ):
        ok = group["weight"].notna().all()
        rows.append((code, period, "commune", province, commune, float(group["share"].sum()) if ok else None,
                     "ok" if ok else "cannot_allocate", _composition(group, version)))
    # A province total takes a split commune whole when all its new communes lie in that province.
    spread = pairs.groupby("old_commune_code")["new_province_code"].nunique()
    whole = values.merge(
        pairs.drop_duplicates("old_commune_code")[["old_commune_code", "new_province_code"]], on="old_commune_code"
    )
    whole["weight"] = 1.0
    whole["basis"] = "whole"
    across = whole["old_commune_code"].map(spread).fillna(1) > 1
    for (code, period, province), group in whole.groupby(["indicator_code", "period", "new_province_code"], sort=True):
        ok = not across[group.index].any()
        rows.append((code, period, "province", province, None, float(group["value"].sum()) if ok else None,
                     "ok" if ok else "cannot_allocate", _composition(group, version)))
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def _non_additive(values: pd.DataFrame, pairs: pd.DataFrame, version: str) -> pd.DataFrame:
    """Carried where a new commune is exactly one whole old commune; otherwise it cannot be aggregated."""
    parts = values.merge(pairs, on="old_commune_code", how="inner")
    sources = pairs.groupby("new_commune_code")["old_commune_code"].nunique()
    rows = []
    for (code, period, commune, province), group in parts.groupby(
        ["indicator_code", "period", "new_commune_code", "new_province_code"], sort=True
    ):
        one = len(group) == 1 and sources.get(commune, 0) == 1 and not bool(group["is_split"].iloc[0])
        rows.append((code, period, "commune", province, commune, float(group["value"].iloc[0]) if one else None,
                     "ok" if one else "cannot_aggregate", _composition(group, version)))
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def _ratio(ind: Indicator, additive: pd.DataFrame) -> pd.DataFrame:
    keys = ["period", "level", "new_province_code", "new_commune_code"]
    num = additive[additive["indicator_code"] == ind.numerator].set_index(keys)
    den = additive[additive["indicator_code"] == ind.denominator].set_index(keys)
    joined = num.join(den, how="outer", lsuffix="_num", rsuffix="_den")
    rows = []
    for key, r in joined.iterrows():
        n, d = _num(r["value_num"]), _num(r["value_den"])
        if pd.isna(r["status_num"]) or pd.isna(r["status_den"]):
            value, status = None, "missing_input"
        elif r["status_num"] != "ok" or r["status_den"] != "ok":
            value, status = None, "cannot_allocate"
        else:
            value, status = (n / d * ind.scale if d else None), "ok"
        composition = json.dumps(
            {"numerator": {"indicator_code": ind.numerator, "value": n, "composition": _loads(r["composition_num"])},
             "denominator": {"indicator_code": ind.denominator, "value": d, "composition": _loads(r["composition_den"])}},
            ensure_ascii=False, sort_keys=True,
        )
        period, level, province, commune = key
        rows.append((ind.code, period, level, province, commune, value, status, composition))
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def _loads(text: object) -> object:
    return json.loads(text) if isinstance(text, str) else None


def reaggregate(values: pd.DataFrame, ref: Reference, catalogue: dict[str, Indicator],
                weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """Indicator values per old commune and period -> per new commune and new province.

    Returns one row per (indicator, period, level, new unit) with ``value``, ``status`` and
    ``composition`` (JSON: old units, their values and weights, crosswalk version).
    """
    missing = [c for c in VALUE_COLUMNS if c not in values.columns]
    if missing:
        raise IndicatorError(f"indicator values: missing columns {missing}")
    unknown = sorted(set(values["indicator_code"]) - set(catalogue))
    if unknown:
        raise IndicatorError(f"indicator values: indicators not in the catalogue: {unknown}")
    values = values[VALUE_COLUMNS].assign(value=pd.to_numeric(values["value"], errors="raise").astype(float))
    pairs = _pairs(ref, weights)
    kind = values["indicator_code"].map(lambda c: catalogue[c].kind)
    additive = _additive(values[kind == "additive"], pairs, ref.version)
    frames = [additive, _non_additive(values[kind == "non_additive"], pairs, ref.version)]
    frames += [_ratio(ind, additive) for ind in catalogue.values() if ind.kind == "ratio"
               and {ind.numerator, ind.denominator} <= set(values["indicator_code"])]
    out = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else \
        pd.DataFrame(columns=OUTPUT_COLUMNS)
    return out.sort_values(["indicator_code", "period", "level", "new_province_code", "new_commune_code"],
                           na_position="first", ignore_index=True)


def export_period(result: pd.DataFrame, period: str, folder: Path) -> tuple[Path, Path]:
    """Write one period's re-aggregated indicators as CSV and JSON (open formats, new unit codes)."""
    folder.mkdir(parents=True, exist_ok=True)
    part = result[result["period"] == period]
    csv_path = folder / f"indicators_{period}.csv"
    json_path = folder / f"indicators_{period}.json"
    part.to_csv(csv_path, index=False)
    records = [
        {**{k: (None if pd.isna(v) else v) for k, v in row.items() if k != "composition"},
         "composition": json.loads(row["composition"])}
        for row in part.to_dict(orient="records")
    ]
    json_path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return csv_path, json_path
