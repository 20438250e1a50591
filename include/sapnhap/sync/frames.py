"""DataFrames in and out of the bucket as Parquet (zstd), by the object references the batch carries.

A batch flows through the stages in bounded chunks (issue 12: one legacy table of millions of
rows syncs in flat memory): at most :func:`chunk_rows` rows of a stage's frame are held at once.
A batch of one chunk is stored and read exactly as before (one object per artefact); a larger
one stores its row objects (transformed, valid) in parts (:func:`sapnhap.storage.multipart`),
each part listed with its sha256 and rows in the signed manifest.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sapnhap import storage
from sapnhap.services import Services

PARQUET = "application/vnd.apache.parquet"

# How many rows of a batch a stage holds at once (SAPNHAP_CHUNK_ROWS). A batch of at most this
# many rows is one chunk: today's single-frame path, unchanged. 50,000 (was 100,000): one source
# of 1M rows peaked at 807 MiB per worker with 100k-row chunks and 674 MiB with 50k, and 10M rows
# reached 954-1,001 MiB at 100k (bench/RESULTS.md, session 5).
CHUNK_ROWS_ENV = "SAPNHAP_CHUNK_ROWS"
DEFAULT_CHUNK_ROWS = 50_000


def chunk_rows() -> int:
    """Rows per chunk (``SAPNHAP_CHUNK_ROWS``, default 50,000)."""
    text = os.environ.get(CHUNK_ROWS_ENV, "").strip()
    if not text:
        return DEFAULT_CHUNK_ROWS
    value = int(text)
    if value < 1:
        raise ValueError(f"{CHUNK_ROWS_ENV} must be a positive number of rows, not {text!r}")
    return value


def frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_frame(services: Services, obj: dict, columns: list[str] | None = None) -> pd.DataFrame:
    """The whole frame of a stored object (every part, in order), each part's sha256 checked."""
    tables = [_read_table(services, p, columns) for p in storage.parts_of(obj)]
    # A column missing in one part only (no value of it there) takes the type the other parts give it.
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    return table.to_pandas()


def _read_table(services: Services, part: dict, columns: list[str] | None) -> pa.Table:
    data = storage.get_bytes(services.s3, str(part["key"]), str(part["sha256"]))
    if columns is None:
        return pq.read_table(io.BytesIO(data))
    have = set(pq.read_schema(io.BytesIO(data)).names)
    return pq.read_table(io.BytesIO(data), columns=[c for c in columns if c in have])


def _read_part(services: Services, part: dict, columns: list[str] | None) -> pd.DataFrame:
    return _read_table(services, part, columns).to_pandas()


def iter_frames(services: Services, obj: dict, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The frames of a stored object part by part (one frame for an object of one part)."""
    for part in storage.parts_of(obj):
        yield _read_part(services, part, columns)


def object_rows(obj: dict) -> int | None:
    """Rows of an object when its reference says (objects in parts do), else None."""
    return int(obj["rows"]) if "rows" in obj else None


def download(services: Services, obj: dict, folder: Path) -> Path:
    """A single-part object downloaded (streamed, verified) into ``folder``; returns the local file."""
    (part,) = storage.parts_of(obj)
    return storage.get_file(services.s3, str(part["key"]), Path(folder) / Path(str(part["key"])).name,
                            str(part["sha256"]))


def iter_file(path: Path, rows: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """A local Parquet file as frames of at most ``rows`` rows, each indexed by its rows' positions in the file."""
    pf = pq.ParquetFile(path)
    start = 0
    for rb in pf.iter_batches(batch_size=rows, columns=columns):
        frame = pa.Table.from_batches([rb]).to_pandas()
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def put_frame(services: Services, key: str, frame: pd.DataFrame) -> dict:
    return storage.put_bytes(services.s3, key, frame_bytes(frame), PARQUET).as_dict()


class PartWriter:
    """Writes one artefact of a batch chunk by chunk: ``<name>.part-00000.parquet``, ... then its reference.

    ``close()`` returns the reference the batch carries: the object in parts (every part's key,
    sha256, size and rows), or, when only one part was written, that part as a plain object under
    ``<name>.parquet`` (what a one-chunk batch has always stored).
    """

    def __init__(self, services: Services, prefix: str, name: str) -> None:
        self.services, self.prefix, self.name = services, prefix, name
        self.parts: list[dict] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="sapnhap-parts-")

    def write(self, frame: pd.DataFrame) -> None:
        path = Path(self._tmp.name) / f"{len(self.parts):05d}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="zstd")
        self.parts.append({"path": path, "rows": len(frame)})

    def close(self) -> dict:
        try:
            if len(self.parts) <= 1:
                if not self.parts:
                    raise ValueError(f"{self.name}: no part written")
                return storage.put_file(self.services.s3, f"{self.prefix}{self.name}.parquet", self.parts[0]["path"],
                                        PARQUET).as_dict()
            stored = []
            for i, part in enumerate(self.parts):
                obj = storage.put_file(self.services.s3, f"{self.prefix}{self.name}.part-{i:05d}.parquet",
                                       part["path"], PARQUET).as_dict()
                stored.append({**obj, "rows": part["rows"]})
            return storage.multipart(stored)
        finally:
            self._tmp.cleanup()
