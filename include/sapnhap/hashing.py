"""64-bit row hashes, and the rows whose hash repeats in a batch found in flat memory.

A batch in chunks (``SAPNHAP_CHUNK_ROWS``) must still find what repeats across the whole batch:
transform merges in-batch duplicates by record and natural key, validate checks uniqueness. Both
keep one 64-bit hash and one position per row. Held in memory that is 16+ bytes per row, plus the
hash table of the duplicate search: a 10M-row source would pass the 1 GB per worker by that alone.
:class:`RepeatFinder` spills them to disk in partitions by the hash's top bits, so equal hashes meet
in one partition, and searches one partition at a time: the memory is one partition's, whatever
the batch's size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

PARTITION_BITS = 6  # 64 partitions: 10M rows are ~156k (2.5 MB) per partition


def row_hashes(frame: pd.DataFrame, columns: Iterable[str]) -> np.ndarray:
    """A 64-bit hash per row of the values of ``columns`` (equal values, equal hashes, in every chunk)."""
    from pandas.core.util.hashing import combine_hash_arrays

    columns = list(columns)
    if not len(frame):
        return np.array([], dtype="uint64")
    values = [frame[c].astype("object").where(frame[c].notna(), None).to_numpy(dtype=object) for c in columns]
    return combine_hash_arrays((pd.util.hash_array(v, categorize=False) for v in values), len(values))


class RepeatFinder:
    """Positions whose hash repeats among everything added, searched partition by partition on disk.

    ``add(hashes, positions)`` per chunk; ``repeated()`` once at the end: the sorted positions of
    every row whose hash another row also has. Memory held: the chunk being added, then one
    partition (1/64 of the rows) at a time. Use as a context manager (the files are removed).
    """

    def __init__(self, folder: Path | None = None, bits: int = PARTITION_BITS) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="sapnhap-repeats-", dir=folder)
        self.folder = Path(self._tmp.name)
        self.bits = bits
        self.rows = 0

    def __enter__(self) -> RepeatFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    def _files(self, p: int) -> tuple[Path, Path]:
        return self.folder / f"h{p:03d}.bin", self.folder / f"p{p:03d}.bin"

    def add(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        hashes = np.asarray(hashes, dtype="uint64")
        positions = np.asarray(positions, dtype="int64")
        if len(hashes) != len(positions):
            raise ValueError("one position per hash")
        self.rows += len(hashes)
        if not len(hashes):
            return
        part = (hashes >> np.uint64(64 - self.bits)).astype("int64")
        order = np.argsort(part, kind="stable")
        part, hashes, positions = part[order], hashes[order], positions[order]
        bounds = np.searchsorted(part, np.arange((1 << self.bits) + 1))
        for p in range(1 << self.bits):
            lo, hi = bounds[p], bounds[p + 1]
            if lo == hi:
                continue
            h_path, p_path = self._files(p)
            with h_path.open("ab") as f:
                hashes[lo:hi].tofile(f)
            with p_path.open("ab") as f:
                positions[lo:hi].tofile(f)

    def repeated(self) -> np.ndarray:
        """Sorted positions of the rows whose hash repeats (every row of a repeating hash)."""
        found = []
        for p in range(1 << self.bits):
            h_path, p_path = self._files(p)
            if not h_path.exists():
                continue
            hashes = np.fromfile(h_path, dtype="uint64")
            repeat = pd.Series(hashes).duplicated(keep=False).to_numpy()
            if repeat.any():
                found.append(np.fromfile(p_path, dtype="int64")[repeat])
        return np.sort(np.concatenate(found)) if found else np.array([], dtype="int64")
