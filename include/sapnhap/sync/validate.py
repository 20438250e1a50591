"""Validate: the dataset's suite on the transformed rows (:mod:`sapnhap.quality`); valid rows, quarantine,
warnings, the validation result and the Data Docs stored in the bucket.

A batch whose dates are not proven (day and month could be swapped) is blocked whole.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from sapnhap import db, ops, storage
from sapnhap.services import Services
from sapnhap.sources import Source
from sapnhap.sync.batch import Batch
from sapnhap.sync.frames import PartWriter, iter_frames, put_frame, read_frame

log = logging.getLogger(__name__)

DATA_DOCS_SKIPPED = ("static/fonts/", "static/images/")


def validate_stage(services: Services, source: Source, payload: Batch | Mapping[str, Any]) -> dict:
    """Run the dataset's GX suite; store valid rows, quarantine, warnings and the Data Docs."""
    from sapnhap.quality import validate_batch
    from sapnhap.quality.validate import validate_chunks
    from sapnhap.reference import load_reference

    batch = Batch.from_xcom(payload)
    transformed = batch.objects["transformed"]
    in_parts = len(storage.parts_of(transformed)) > 1
    ref = load_reference()
    prefix = batch.prefix
    valid_writer = PartWriter(services, prefix, "valid") if in_parts else None
    with tempfile.TemporaryDirectory(prefix="sapnhap-docs-") as tmp:
        if in_parts:
            # A batch larger than one chunk: validated chunk by chunk, uniqueness over the whole batch's keys.
            outcome = validate_chunks(
                lambda columns: iter_frames(services, transformed, columns), batch.dataset,
                write_valid=valid_writer.write, reference=ref, thresholds=source.quality, docs_dir=Path(tmp),
            )
        else:
            outcome = validate_batch(
                read_frame(services, transformed),
                batch.dataset,
                reference=ref,  # new codes are checked against the registry as of each record's date
                thresholds=source.quality,
                docs_dir=Path(tmp),
            )
        docs = []
        if outcome.data_docs_path is not None:
            for path in sorted(Path(outcome.data_docs_path).rglob("*")):
                rel = path.relative_to(outcome.data_docs_path).as_posix()
                # GX's fonts and images are the same 4 MB for every batch; the pages and styles are the record.
                if path.is_file() and not rel.startswith(DATA_DOCS_SKIPPED):
                    ctype = {".html": "text/html", ".css": "text/css"}.get(path.suffix, "application/octet-stream")
                    docs.append(storage.put_file(services.s3, prefix + "data_docs/" + rel, path, ctype).as_dict())
    decision, results = outcome.decision, list(outcome.results)
    date_findings = batch.date_findings
    if date_findings:
        # Dates not proven: loading would swap day and month silently, so the dataset waits whole.
        decision = "block"
        results += [
            {"expectation": "date_format_proven", "check": "date_format", "column": f["column"], "success": False,
             "unexpected_count": f["day_month_only"] + f["month_day_only"] + f["ambiguous"], "severity": "block",
             "notes": f["reason_vi"], "evidence": {k: f[k] for k in
                                                   ("numeric", "day_month_only", "month_day_only", "ambiguous", "neither")}}
            for f in date_findings
        ]
        with db.connect(services.platform_dsn, "validate") as conn:
            ops.append_batch_message(conn, batch_id=batch.batch_id, text=" ".join(f["reason_vi"] for f in date_findings))
        log.warning("%s/%s: load blocked, date format not proven: %s", source.id, batch.dataset,
                    "; ".join(f"{f['column']} {f['problem']}" for f in date_findings))
    objects = dict(batch.objects)
    if valid_writer is not None:
        objects["valid"] = valid_writer.close()
        valid_rows = int(outcome.extra["valid_rows"])
    else:
        objects["valid"] = put_frame(services, prefix + "valid.parquet", outcome.valid)
        valid_rows = len(outcome.valid)
    objects["quarantine"] = put_frame(services, prefix + "quarantine.parquet", outcome.quarantine)
    objects["warnings"] = put_frame(services, prefix + "warnings.parquet", outcome.warnings)
    objects["validation"] = storage.put_json(
        services.s3,
        prefix + "validation.json",
        {"suite_version": outcome.suite_version, "decision": decision, "failed_ratio": outcome.failed_ratio,
         "results": results},
    ).as_dict()
    quarantined_rows = int(outcome.quarantine["_row_id"].nunique()) if len(outcome.quarantine) else 0
    return replace(
        batch,
        objects=objects,
        data_docs=docs,
        valid_rows=valid_rows,
        quarantined_rows=quarantined_rows,
        failed_ratio=outcome.failed_ratio,
        decision=decision,
        suite_version=outcome.suite_version,
    ).to_xcom()
