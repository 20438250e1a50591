"""The nightly sync, one module per stage in the order the DAG runs them.

    prepare -> extract -> transform -> validate -> backup -> load -> reconcile

- :mod:`~sapnhap.sync.prepare`: schema check, reference data, the bucket, ``ops.runs`` opened,
  runs Airflow ended without a callback closed;
- :mod:`~sapnhap.sync.extract`: the (source, dataset) lease, new/changed rows since the committed
  cursor (plus requeued and resync rows) stored raw in the bucket;
- :mod:`~sapnhap.sync.transform`: old unit codes to new ones, canonical rows;
- :mod:`~sapnhap.sync.validate`: the dataset's suite; valid rows, quarantine, warnings, Data Docs;
- :mod:`~sapnhap.sync.backup`: the manifest (built from the batch, signed, written once, verified);
- :mod:`~sapnhap.sync.load`: one transaction: rows, quarantine, cursor, files, reconciliation row;
- :mod:`~sapnhap.sync.reconcile`: every expected batch of the run reconciled, ``ops.runs`` closed.

Each stage is a plain function a DAG task (or the bench, or a test) calls with the
:class:`~sapnhap.sync.batch.Batch` payload of the previous one, and returns the next payload
(:meth:`~sapnhap.sync.batch.Batch.to_xcom`). Stages pass references, never data: every
intermediate artefact is an object in the backup bucket, so any worker can run any stage and a
retry starts from what the previous stage stored. The pure libraries they orchestrate stay where
they are (:mod:`sapnhap.extract`, :mod:`sapnhap.transform`, :mod:`sapnhap.quality`,
:mod:`sapnhap.load`); the SQL they write to ``ops.*`` is in :mod:`sapnhap.ops`.
"""

from __future__ import annotations

import importlib
from typing import Any

# ``sync.extract_stage(...)`` etc. for scripts that drive every stage (the bench, the soak); each
# stage's module is imported when first used, so importing the package stays cheap.
_STAGES = {
    "prepare_run": "prepare",
    "extract_stage": "extract",
    "transform_stage": "transform",
    "validate_stage": "validate",
    "backup_stage": "backup",
    "load_stage": "load",
    "reconcile_run": "reconcile",
    "Batch": "batch",
}

__all__ = sorted(_STAGES)


def __getattr__(name: str) -> Any:
    module = _STAGES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
