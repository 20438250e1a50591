"""What repeats in a batch in chunks is found in memory that does not grow with the batch (issue 12).

Transform (in-batch merges) and validate (uniqueness) keep a hash and a position per row of a
chunked batch. Held in memory, that state grew with the rows (the 5M-row source reached 987 MiB,
at the 1 GB line). Measured here with tracemalloc (numpy's and pandas' hash tables report to it):
the peak for 40 chunks is about the peak for 4, and the rows found are exactly the rows a
whole-frame ``duplicated(keep=False)`` finds.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from sapnhap.datasets import get_dataset
from sapnhap.hashing import RepeatFinder, row_hashes
from sapnhap.quality.validate import ROW_ID, _uniqueness_candidates
from sapnhap.sync.transform import _MergeKeys

CHUNK = 10_000


def _chunks(n_chunks: int, seed: int = 7) -> Iterator[pd.DataFrame]:
    """Residents-like chunks: unique keys but for a few repeats within and across chunks, some keys missing."""
    rng = np.random.default_rng(seed)
    for i in range(n_chunks):
        start = i * CHUNK
        ids = np.arange(start, start + CHUNK)
        citizen = pd.Series([f"0{k:011d}" for k in ids], dtype="object")
        repeat = rng.choice(CHUNK, size=20, replace=False)
        citizen.iloc[repeat[:10]] = [f"0{k:011d}" for k in rng.integers(0, max(start, 1), size=10)]
        citizen.iloc[repeat[10:]] = None
        yield pd.DataFrame({ROW_ID: ids, "source_key": [f"SK{k}" for k in ids], "citizen_id": citizen.to_numpy()},
                           index=pd.RangeIndex(start, start + CHUNK))


def _peak(fn) -> int:  # noqa: ANN001
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _expected_repeats(frames: list[pd.DataFrame], column: str) -> np.ndarray:
    whole = pd.concat(frames)
    keyed = whole[whole[column].notna()]
    return np.sort(keyed.index[keyed[column].duplicated(keep=False)].to_numpy())


def test_repeat_finder_finds_exactly_what_one_frame_finds_across_chunks(tmp_path) -> None:
    frames = list(_chunks(6))
    with RepeatFinder(tmp_path) as finder:
        for f in frames:
            keyed = f[f["citizen_id"].notna()]
            finder.add(row_hashes(keyed, ["citizen_id"]), keyed.index.to_numpy())
        found = finder.repeated()
        assert finder.rows == sum(f["citizen_id"].notna().sum() for f in frames)
    expected = _expected_repeats(frames, "citizen_id")
    assert len(expected) >= 20  # repeats inside a chunk and across chunks
    np.testing.assert_array_equal(found, expected)
    assert not any(tmp_path.iterdir())  # the spilled partitions are removed


def test_uniqueness_candidates_are_the_repeats_and_the_missing_in_flat_memory() -> None:
    frames = list(_chunks(6))
    candidates, total = _uniqueness_candidates(iter(frames), ["citizen_id"])
    whole = pd.concat(frames)
    missing = whole.index[whole["citizen_id"].isna()].to_numpy()
    assert total == len(whole)
    np.testing.assert_array_equal(np.sort(candidates), np.union1d(_expected_repeats(frames, "citizen_id"), missing))

    small = _peak(lambda: _uniqueness_candidates(_chunks(4), ["citizen_id"]))
    large = _peak(lambda: _uniqueness_candidates(_chunks(30), ["citizen_id"]))
    # 10x the rows; held in memory the key state is 10x. Spilled, the peak is one chunk's work.
    assert large < 1.5 * small, (small, large)


@pytest.mark.parametrize("n_chunks", [30])
def test_transform_merge_keys_stay_flat_and_find_record_and_key_repeats(tmp_path, n_chunks: int) -> None:
    ds = get_dataset("residents")
    assert list(ds.natural_key) == ["citizen_id"]

    def run(n: int) -> np.ndarray:
        keys = _MergeKeys(tmp_path, ds)
        try:
            for f in _chunks(n):
                keys.add(f)
            return keys.candidates()
        finally:
            keys.close()

    frames = list(_chunks(4))
    np.testing.assert_array_equal(run(4), _expected_repeats(frames, "citizen_id"))
    small = _peak(lambda: run(4))
    large = _peak(lambda: run(n_chunks))
    assert large < 1.5 * small, (small, large)
