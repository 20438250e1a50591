"""The batch the stages pass on: typed fields, a plain JSON-safe XCom payload, a manifest built from it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sapnhap.sources import get_source
from sapnhap.sync.backup import manifest_body
from sapnhap.sync.batch import Batch, batch_id_for


def _batch() -> Batch:
    return Batch(run_id="manual__2026-12-01T01:00:00+00:00", source_id="hg_bacquang_sqlite", dataset="dossiers",
                 run_date="2026-12-01", attempt="20261201T010000000000Z-abcd1234", rows=3, cursor_from=None,
                 cursor_to="2026-11-30 10:00:00", files=[{"file_name": "a.csv", "sha256": "00", "rows": 3}],
                 objects={"raw": {"key": "k", "sha256": "s", "size": 1}}, extract_started_at="2026-12-01T01:00:01+00:00")


def test_the_payload_is_plain_json_and_round_trips() -> None:
    batch = _batch()
    payload = batch.to_xcom()
    assert json.loads(json.dumps(payload)) == payload
    assert Batch.from_xcom(json.loads(json.dumps(payload))) == batch
    assert Batch.from_xcom(batch) is batch


def test_the_ids_are_fields_and_the_batch_id_is_built_from_them() -> None:
    payload = _batch().to_xcom()
    assert (payload["run_id"], payload["source_id"], payload["dataset"]) == (
        "manual__2026-12-01T01:00:00+00:00", "hg_bacquang_sqlite", "dossiers")
    assert payload["batch_id"] == batch_id_for(payload["run_id"], payload["source_id"], payload["dataset"])
    # The bucket folder: the run id made safe for object keys, one folder per attempt.
    assert payload["prefix"] == ("backups/hg_bacquang_sqlite/dossiers/2026-12-01/manual__2026-12-01T01_00_00_00_00/"
                                 "20261201T010000000000Z-abcd1234/")


def test_a_payload_with_unknown_or_inconsistent_keys_is_refused() -> None:
    payload = _batch().to_xcom()
    with pytest.raises(ValueError, match="unknown keys"):
        Batch.from_xcom({**payload, "rowz": 3})
    with pytest.raises(ValueError, match="batch_id"):
        Batch.from_xcom({**payload, "batch_id": "other|hg_bacquang_sqlite|dossiers"})


def test_the_manifest_is_the_batch_with_what_the_backup_adds() -> None:
    batch = replace(_batch(), transformed_rows=3, merged_in_batch=0, crosswalk_version="cw1", valid_rows=2,
                    quarantined_rows=1, failed_ratio=1 / 3, decision="load", suite_version="s1",
                    data_docs=[{"key": "d/index.html", "sha256": "x", "size": 1}])
    manifest = manifest_body(batch, get_source(batch.source_id), created_at="2026-12-01T01:05:00+00:00")
    assert {k: manifest[k] for k in ("batch_id", "run_id", "source_id", "dataset", "attempt")} == {
        "batch_id": batch.batch_id, "run_id": batch.run_id, "source_id": batch.source_id, "dataset": batch.dataset,
        "attempt": batch.attempt}
    assert manifest["counts"] == {"extracted": 3, "transformed": 3, "merged_in_batch": 0, "valid": 2, "quarantined": 1}
    assert manifest["cursor"]["from"] is None and manifest["cursor"]["to"] == "2026-11-30 10:00:00"
    assert manifest["objects"] == batch.objects and manifest["data_docs"] == ["d/index.html"]
    assert manifest["files"] == batch.files and manifest["complete"] is True
