"""The province's indicator exports, built from the platform (``core.indicator_values``), never from the legacy files.

``publish_indicators(services, as_of)`` reads the current values (rows the legacy system still
has), re-aggregates them to the new communes and provinces with the catalogue and the province's
declared weights (:func:`sapnhap.indicators.reaggregate`), and writes one CSV and one JSON per
period to ``exports/indicators/<as_of>/`` in the bucket, each value with its composition.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd

from sapnhap import db, storage
from sapnhap.indicators import (
    VALUE_COLUMNS,
    Indicator,
    IndicatorError,
    export_period,
    load_catalogue,
    load_weights,
    reaggregate,
)
from sapnhap.services import Services

EXPORT_PREFIX = "exports/indicators"
WEIGHTS_DIR_ENV = "SAPNHAP_INDICATOR_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path(__file__).with_name("weights")


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR)


def load_province_weights(directory: Path | None = None) -> pd.DataFrame | None:
    """Every province's weights file (``weights_<province>.csv``) of ``directory``, or None when there is none."""
    files = sorted(Path(directory or weights_dir()).glob("weights_*.csv"))
    if not files:
        return None
    frame = pd.concat([load_weights(f) for f in files], ignore_index=True)
    twice = frame[frame.duplicated(["old_commune_code", "new_commune_code"], keep=False)]
    if len(twice):
        raise IndicatorError(f"weights: {twice.iloc[0]['old_commune_code']} -> {twice.iloc[0]['new_commune_code']} "
                             "is declared in two files")
    return frame


def read_values(dsn: str) -> pd.DataFrame:
    """The platform's current indicator values (numerator and denominator kept), rows still in their legacy system."""
    with db.connect(dsn, "report") as conn:
        cur = conn.execute(
            """SELECT indicator_code, period, old_commune_code, value, numerator, denominator
               FROM core.indicator_values WHERE deleted_in_source_at IS NULL
               ORDER BY indicator_code, period, old_commune_code""")
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description], dtype=object)


def with_ratio_parts(values: pd.DataFrame, catalogue: dict[str, Indicator]) -> pd.DataFrame:
    """Values plus the additive parts a ratio row reports (its numerator and denominator) where the
    system did not report those parts as values of their own: a ratio is recomputed from them."""
    frames = [values[VALUE_COLUMNS]]
    have = set(zip(values["indicator_code"], values["period"], values["old_commune_code"], strict=True))
    for ind in catalogue.values():
        if ind.kind != "ratio":
            continue
        rows = values[(values["indicator_code"] == ind.code) & values["numerator"].notna() & values["denominator"].notna()]
        for column, part in (("numerator", ind.numerator), ("denominator", ind.denominator)):
            derived = pd.DataFrame({"indicator_code": part, "period": rows["period"],
                                    "old_commune_code": rows["old_commune_code"], "value": rows[column]})
            known = [(part, p, c) in have for p, c in zip(derived["period"], derived["old_commune_code"], strict=True)]
            frames.append(derived[[not k for k in known]])
    return pd.concat(frames, ignore_index=True)


def publish_indicators(services: Services, *, as_of: date, weights: Path | None = None) -> dict:
    """Re-aggregate the platform's indicator values and store one CSV + JSON per period in the bucket.

    Returns counts (old values read, outputs, outputs by status, periods) and the stored objects.
    """
    from sapnhap.reference import load_reference

    catalogue = load_catalogue()
    values = read_values(services.platform_dsn)
    result = reaggregate(with_ratio_parts(values, catalogue), load_reference(), catalogue, load_province_weights(weights))
    prefix = f"{EXPORT_PREFIX}/{as_of.isoformat()}/"
    storage.ensure_bucket(services.s3)
    objects = {}
    with tempfile.TemporaryDirectory(prefix="sapnhap-indicators-") as tmp:
        for period in sorted(result["period"].unique()):
            for path in export_period(result, period, Path(tmp)):
                kind = "text/csv" if path.suffix == ".csv" else "application/json"
                obj = storage.put_file(services.s3, prefix + path.name, path, f"{kind}; charset=utf-8")
                storage.verify_object(services.s3, obj.as_dict())
                objects[path.name] = obj.as_dict()
    return {
        "values": int(len(values)),
        "outputs": int(len(result)),
        "status": {k: int(v) for k, v in result["status"].value_counts().sort_index().items()},
        "periods": sorted(result["period"].unique().tolist()),
        "objects": objects,
    }
