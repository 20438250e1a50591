"""The legacy row hash: one definition, computed in Arrow at transform time and per row elsewhere."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sapnhap.sources import get_source
from sapnhap.verify import CARRIED_HASH_COLUMN, hash_columns, legacy_row_hashes, row_digest


def test_arrow_hash_equals_the_per_row_definition() -> None:
    mapping = get_source("hg_bacquang_sqlite").datasets["dossiers"]
    cols = hash_columns(mapping)
    values = ["", "a", "Nguyễn", "x|y:z", "-", "1:a", None, np.nan, "😀", "e\u0301"]
    rng = np.random.default_rng(1)
    raw = pd.DataFrame({c: [values[i] for i in rng.integers(0, len(values), 400)] for c in cols}, dtype=object)
    expected = [
        row_digest(None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in row)
        for row in raw[cols].itertuples(index=False)
    ]
    assert legacy_row_hashes(raw, mapping) == expected
    assert legacy_row_hashes(raw.iloc[:0], mapping) == []


def test_null_empty_and_separators_do_not_collide() -> None:
    assert len({row_digest(v) for v in ([None], [""], ["-"], ["0:"], ["a", "b"], ["ab"], ["a|b"], [None, None])}) == 8


def test_a_requeued_record_keeps_the_hash_of_its_legacy_row() -> None:
    mapping = get_source("hg_bacquang_sqlite").datasets["dossiers"]
    raw = pd.DataFrame({c: ["x", "y"] for c in hash_columns(mapping)}, dtype=object)
    raw[CARRIED_HASH_COLUMN] = [None, "f" * 32]
    first, second = legacy_row_hashes(raw, mapping)
    assert first == row_digest(["x"] * len(hash_columns(mapping))) and second == "f" * 32
