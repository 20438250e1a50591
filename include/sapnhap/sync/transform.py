"""Transform: the raw batch mapped to canonical rows under the new unit codes (:mod:`sapnhap.transform`).

Split-commune records with no rule and no decision are queued for the data team's review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pandas as pd

from sapnhap import db, ops
from sapnhap.datasets import get_dataset
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.sync.batch import Batch
from sapnhap.sync.frames import put_frame, read_frame


def _decisions(services: Services) -> pd.DataFrame | None:
    from sapnhap.reference.platform import load_decisions

    return load_decisions(db.dsn_for(services.platform_dsn, "transform"))


def transform_stage(services: Services, source: Source, payload: Batch | Mapping[str, Any]) -> dict:
    """Map the raw batch to canonical rows under new unit codes; store the result."""
    from sapnhap.reference import load_reference, load_split_rules
    from sapnhap.reference.platform import enqueue_reviews
    from sapnhap.transform import record_keys, transform_frame

    batch = Batch.from_xcom(payload)
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
