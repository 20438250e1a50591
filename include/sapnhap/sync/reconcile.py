"""Reconcile: every expected (source, dataset) batch of the run has a reconciliation row that adds up;
the run is closed in ``ops.runs`` with the verdict."""

from __future__ import annotations

import pandas as pd

from sapnhap import db, ops
from sapnhap.load import ReconciliationError
from sapnhap.services import Services


def reconcile_run(services: Services, run_id: str, expected: list[tuple[str, str]]) -> pd.DataFrame:
    """Check that every expected (source, dataset) batch of the run was reconciled; raise if not."""
    with db.connect(services.platform_dsn, "reconcile") as conn:
        rows = ops.run_reconciliation(conn, run_id)
    frame = pd.DataFrame(
        rows, columns=["source_id", "dataset", "extracted", "loaded", "quarantined", "merged_duplicates", "blocked", "ok"]
    )
    seen = set(zip(frame["source_id"], frame["dataset"], strict=True))
    missing = [f"{s}/{d}" for s, d in expected if (s, d) not in seen]
    bad = frame[(frame["extracted"] != frame["loaded"] + frame["quarantined"] + frame["merged_duplicates"] + frame["blocked"])]
    problem = (
        f"run {run_id}: not reconciled: missing batches {missing}; mismatched {bad.to_dict(orient='records')}"
        if missing or not bad.empty
        else None
    )
    with db.connect(services.platform_dsn, "reconcile") as conn:
        ops.close_run(conn, run_id=run_id, status="failed" if problem else "succeeded", message=problem)
    if problem:
        raise ReconciliationError(problem)
    return frame
