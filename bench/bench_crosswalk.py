"""Benchmark: convert >= 10 million records by old commune code (not part of the test suite).

Run: PYTHONPATH=include python bench/bench_crosswalk.py [--rows 10000000]

Prints rows/s of `convert_codes` (target >= 5 million rows/s on 2 cores) and the ratio
against a per-row Python dict lookup measured on a sample and extrapolated.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from sapnhap.reference import load_reference  # noqa: E402
from sapnhap.reference.convert import convert_codes  # noqa: E402


def make_records(n_rows: int, seed: int = 7) -> pd.DataFrame:
    """Return n_rows records with old commune codes drawn from the registry (1% unknown, 1% missing)."""
    ref = load_reference()
    codes = ref.old_units.loc[ref.old_units["level"] == "commune", "code"].to_numpy(dtype=object)
    pool = np.concatenate([codes, np.array(["99999"] * (len(codes) // 100) + [None] * (len(codes) // 100), dtype=object)])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pool), n_rows)
    # Legacy extracts arrive as Arrow-backed strings (pandas 3 default `str`).
    return pd.DataFrame({"old_commune_code": pd.array(pool[picks], dtype="str")})


_UNKNOWN = (None, None, None, "unknown_code", None)
_MISSING = (None, None, None, "missing_code", None)


def per_row_dict_lookup(values: pd.Series, mapping: dict) -> pd.DataFrame:
    """The naive baseline: one Python dict lookup per record, same output fields."""
    rows = []
    for value in values:
        if value is None or value != value:
            rows.append(_MISSING)
        else:
            rows.append(mapping.get(value, _UNKNOWN))
    return pd.DataFrame(
        rows, columns=["new_province_code", "new_commune_code", "mapping_method", "mapping_status", "mapping_candidates"]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=1_000_000)
    args = parser.parse_args()

    ref = load_reference()
    records = make_records(args.rows)
    convert_codes(records.head(1000), ref)  # build the lookup tables once, outside the timing

    start = time.perf_counter()
    out = convert_codes(records, ref)
    elapsed = time.perf_counter() - start
    rate = args.rows / elapsed
    print(f"convert_codes: {args.rows:,} rows in {elapsed:.2f} s = {rate / 1e6:.2f} M rows/s")
    print(out["mapping_status"].value_counts().to_string())

    targets = ref.old_commune_targets
    mapping = {
        row.old_commune_code: (
            row.new_province_code,
            None if row.is_split else row.new_commune_code,
            "province_only" if row.is_split else "direct",
            "review" if row.is_split else "mapped",
            row.candidates if row.is_split else None,
        )
        for row in targets.itertuples()
    }
    sample = records["old_commune_code"].head(args.sample)
    start = time.perf_counter()
    per_row_dict_lookup(sample, mapping)
    sample_elapsed = time.perf_counter() - start
    extrapolated = sample_elapsed * args.rows / len(sample)
    print(
        f"per-row dict lookup: {len(sample):,} rows in {sample_elapsed:.2f} s, "
        f"extrapolated {extrapolated:.2f} s for {args.rows:,} rows "
        "(same five output fields, by code only)"
    )
    print(f"ratio vectorized / per-row: {extrapolated / elapsed:.1f}x faster")


if __name__ == "__main__":
    main()
