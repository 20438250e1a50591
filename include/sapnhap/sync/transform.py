"""Transform: the raw batch mapped to canonical rows under the new unit codes (:mod:`sapnhap.transform`).

Split-commune records with no rule and no decision are queued for the data team's review.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from sapnhap import db, ops
from sapnhap.datasets import get_dataset
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.sync.batch import Batch
from sapnhap.sync.frames import PartWriter, chunk_rows, download, iter_file, put_frame, read_frame


def _decisions(services: Services) -> pd.DataFrame | None:
    from sapnhap.reference.platform import load_decisions

    return load_decisions(db.dsn_for(services.platform_dsn, "transform"))


def transform_stage(services: Services, source: Source, payload: Batch | Mapping[str, Any]) -> dict:
    """Map the raw batch to canonical rows under new unit codes; store the result."""
    from sapnhap.reference import load_reference, load_split_rules
    from sapnhap.reference.platform import enqueue_reviews
    from sapnhap.transform import record_keys, transform_frame

    batch = Batch.from_xcom(payload)
    if batch.rows > chunk_rows() and streamable(batch.dataset):
        return _transform_in_chunks(services, source, batch).to_xcom()
    raw = read_frame(services, batch.objects["raw"])
    ref = load_reference()
    # No rows (nothing changed in the legacy system): no split rules or review decisions to read.
    result = transform_frame(
        raw, source, batch.dataset, reference=ref, split_rules=load_split_rules() if len(raw) else None,
        decisions=_decisions(services) if len(raw) else None,
    )
    ds = get_dataset(batch.dataset)
    if ds.has_unit and ds.split_review and (result.frame["mapping_status"] == "review").any():
        # Split-commune records with no rule and no decision wait for the data team, with their candidates.
        enqueue_reviews(
            db.dsn_for(services.platform_dsn, "transform"),
            result.frame.assign(record_key=record_keys(result.frame)),
            record_key_col="record_key",
            run_id=batch.run_id,
            source_id=source.id,
            dataset=batch.dataset,
            address_detail_col="address_detail" if "address_detail" in result.frame else None,
        )
    prefix = batch.prefix
    objects = dict(batch.objects)
    objects["transformed"] = put_frame(services, prefix + "transformed.parquet", result.frame)
    objects["merged_in_batch"] = put_frame(services, prefix + "merged_in_batch.parquet", result.merged_duplicates)
    with db.connect(services.platform_dsn, "transform") as conn:
        ops.record_text_counts(conn, batch_id=batch.batch_id, cleaned=result.text_cleaned, repaired=result.text_repaired)
    return replace(
        batch, objects=objects, transformed_rows=len(result.frame), merged_in_batch=len(result.merged_duplicates),
        crosswalk_version=ref.version, text_cleaned=result.text_cleaned, text_repaired=result.text_repaired,
        date_findings=result.date_findings,
    ).to_xcom()


def streamable(dataset: str) -> bool:
    """Whether a batch of ``dataset`` larger than one chunk goes through the stages in chunks.

    Not the datasets whose checks compare a row with other rows beyond a uniqueness of plain
    columns (the processing steps: each step's previous step; documents: their numbering helper
    and attachments): their batches stay one frame.
    """
    ds = get_dataset(dataset)
    return ds.parent is None and ds.name != "documents"


def _transform_in_chunks(services: Services, source: Source, batch: Batch) -> Batch:
    """:func:`transform_stage` for a batch of more than one chunk, never holding more than a chunk of rows.

    Pass 1 prepares each raw chunk (canonical rows, keys, hashes; text and date evidence added
    up) into a local file and keeps only the columns the in-batch merge reads; the merge runs
    once on those keys (so duplicates across chunks resolve exactly as in one frame); pass 2
    maps each chunk's kept rows to the new units with its row-id offset and stores it as a part.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sapnhap.dateproof import add_tallies, date_tally, findings_from
    from sapnhap.reference import load_reference, load_split_rules
    from sapnhap.reference.platform import enqueue_reviews
    from sapnhap.transform import (
        RAW_SUFFIX,
        date_formats_of,
        dedupe_columns,
        dedupe_rows,
        finish_rows,
        prepare_rows,
        record_keys,
    )

    ds = get_dataset(batch.dataset)
    rows = chunk_rows()
    ref = load_reference()
    split_rules, decisions = load_split_rules(), _decisions(services)
    formats = date_formats_of(source, batch.dataset)
    tallies: dict[str, dict] = {}
    cleaned = repaired = 0
    columns: list[str] | None = None
    raw_columns: set[str] = set()
    prefix = batch.prefix
    with tempfile.TemporaryDirectory(prefix="sapnhap-transform-") as tmp:
        folder = Path(tmp)
        raw_path = download(services, batch.objects["raw"], folder)
        prepared_paths = []
        total = 0
        merge_keys = _MergeKeys(folder, ds)
        for i, raw in enumerate(iter_file(raw_path, rows)):
            total += len(raw)
            prepared = prepare_rows(raw, source, batch.dataset)
            del raw
            cleaned += prepared.text_cleaned
            repaired += prepared.text_repaired
            for c in formats:
                if c in prepared.dates.columns:
                    tallies[c] = add_tallies(tallies.get(c), date_tally(prepared.dates[c]))
            frame = prepared.frame
            if columns is None:
                columns = [c for c in frame.columns if not c.endswith(RAW_SUFFIX)]
            raw_columns |= {c for c in frame.columns if c.endswith(RAW_SUFFIX)}
            merge_keys.add(frame)
            path = folder / f"prepared-{i:05d}.parquet"
            pq.write_table(pa.Table.from_pandas(frame.assign(_position=frame.index), preserve_index=False), path,
                           compression="zstd")
            prepared_paths.append(path)
            del prepared, frame
        raw_path.unlink()
        # The whole batch's merge of in-batch duplicates. Only rows whose record or natural key repeats
        # in the batch (by a 64-bit hash of it) can be merged: their keys are read back and merged
        # exactly as one frame merges them; every other row is kept.
        candidates = merge_keys.candidates()
        merge_keys.close()
        wanted = None
        key_parts = []
        for path in prepared_paths:
            if wanted is None:
                wanted = [*dedupe_columns(pq.read_schema(path).empty_table().to_pandas(), ds), "_position"]
            part = _as_objects(pq.read_table(path, columns=wanted).to_pandas())
            key_parts.append(part[part["_position"].isin(candidates)])
        key_frame = pd.concat(key_parts, ignore_index=True)
        key_frame.index = pd.Index(key_frame.pop("_position").to_numpy())
        kept_positions, merged = dedupe_rows(key_frame, ds)
        keep = np.ones(total, dtype=bool)
        keep[candidates] = False
        keep[kept_positions.to_numpy(dtype="int64")] = True
        del key_frame, key_parts
        merged = _as_objects(merged)
        # Every chunk has the whole batch's columns, in the order one frame has them.
        assert columns is not None
        last = columns.index(ds.column_names[-1]) + 1
        order = [*columns[:last], *[c.name + RAW_SUFFIX for c in ds.columns if c.name + RAW_SUFFIX in raw_columns],
                 *columns[last:]]
        writer = PartWriter(services, prefix, "transformed")
        first_row_id = 0
        reviews = 0
        for path in prepared_paths:
            frame = _as_objects(pq.read_table(path).to_pandas())
            path.unlink()
            frame.index = pd.Index(frame.pop("_position").to_numpy())
            frame = frame[keep[frame.index.to_numpy()]]
            for c in order:
                if c not in frame.columns:
                    frame[c] = pd.Series(None, index=frame.index, dtype="object")
            frame = finish_rows(frame[order], source, batch.dataset, reference=ref, split_rules=split_rules,
                                decisions=decisions, first_row_id=first_row_id)
            first_row_id += len(frame)
            if ds.has_unit and (frame["mapping_status"] == "review").any():
                reviews += int((frame["mapping_status"] == "review").sum())
                enqueue_reviews(
                    db.dsn_for(services.platform_dsn, "transform"),
                    frame.assign(record_key=record_keys(frame)),
                    record_key_col="record_key",
                    run_id=batch.run_id,
                    source_id=source.id,
                    dataset=batch.dataset,
                    address_detail_col="address_detail" if "address_detail" in frame else None,
                )
            writer.write(frame)
            del frame
        objects = dict(batch.objects)
        objects["transformed"] = writer.close()
    objects["merged_in_batch"] = put_frame(services, prefix + "merged_in_batch.parquet", merged)
    with db.connect(services.platform_dsn, "transform") as conn:
        ops.record_text_counts(conn, batch_id=batch.batch_id, cleaned=cleaned, repaired=repaired)
    return replace(
        batch, objects=objects, transformed_rows=first_row_id, merged_in_batch=len(merged),
        crosswalk_version=ref.version, text_cleaned=cleaned, text_repaired=repaired,
        date_findings=findings_from(tallies, formats),
    )


class _MergeKeys:
    """Pass 1's record and natural-key hashes of every row, spilled to disk (flat memory at any batch size).

    ``add(frame)`` per prepared chunk (indexed by its rows' positions in the batch); ``candidates()``:
    the positions whose record key, or whose natural key (when complete), repeats in the batch.
    """

    def __init__(self, folder: Path, ds: Any) -> None:
        from sapnhap.hashing import RepeatFinder

        self.key = list(ds.natural_key)
        self.by_record, self.by_key = RepeatFinder(folder), RepeatFinder(folder)

    def add(self, frame: pd.DataFrame) -> None:
        from sapnhap.hashing import row_hashes

        positions = frame.index.to_numpy(dtype="int64")
        self.by_record.add(row_hashes(frame, ["source_key"]), positions)
        keyed = frame[self.key].notna().all(axis=1).to_numpy()
        self.by_key.add(row_hashes(frame.loc[keyed, self.key], self.key), positions[keyed])

    def candidates(self) -> Any:
        import numpy as np

        return np.union1d(self.by_record.repeated(), self.by_key.repeated())

    def close(self) -> None:
        self.by_record.close()
        self.by_key.close()


def _as_objects(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns back as Python objects (None where missing), as one frame holds them before it is stored."""
    for c in frame.columns:
        if isinstance(frame[c].dtype, pd.StringDtype):
            frame[c] = frame[c].astype("object").where(frame[c].notna(), None)
    return frame
