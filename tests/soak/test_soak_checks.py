"""The soak's end checks judge what they are given: a dataset that never loaded is not "0/0/0"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _soak():  # noqa: ANN202 - the bench script as a module
    spec = importlib.util.spec_from_file_location("soak_under_test", ROOT / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_verify_check_fails_on_a_dataset_that_never_loaded_while_its_source_holds_rows() -> None:
    soak = _soak()
    clean = {"source_id": "a", "dataset": "residents", "status": "ok", "source_rows": 40, "platform_rows": 40,
             "missing": 0, "extra": 0, "different": 0}
    never = {"source_id": "tq_yenson_xa_exports", "dataset": "residents", "status": "not_loaded", "source_rows": 71,
             "platform_rows": 0, "missing": 0, "extra": 0, "different": 0}
    empty = {**never, "dataset": "households", "source_rows": 0}
    assert soak.verify_problems([clean]) == []
    assert soak.verify_problems([clean, never]) == [never]
    assert soak.verify_problems([empty]) == []  # an empty legacy table has nothing to load
    unreadable = {**empty, "message": "never loaded, and the source could not be read to count its rows: gone"}
    assert soak.verify_problems([unreadable]) == [unreadable]
    assert soak.verify_problems([{"source_id": "b", "dataset": "*", "error": "boom"}])
    assert soak.verify_problems([{**clean, "different": 1}])
    assert soak.verify_problems([{**clean, "status": "baseline"}])  # hashes not set: not proven either
