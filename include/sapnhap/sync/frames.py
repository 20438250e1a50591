"""DataFrames in and out of the bucket as Parquet (zstd), by the object references the batch carries."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sapnhap import storage
from sapnhap.services import Services

PARQUET = "application/vnd.apache.parquet"


def frame_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def read_frame(services: Services, obj: dict) -> pd.DataFrame:
    """The frame of a stored object, its sha256 checked."""
    data = storage.get_bytes(services.s3, str(obj["key"]), str(obj["sha256"]))
    return pq.read_table(io.BytesIO(data)).to_pandas()


def put_frame(services: Services, key: str, frame: pd.DataFrame) -> dict:
    return storage.put_bytes(services.s3, key, frame_bytes(frame), PARQUET).as_dict()
