"""One (source, dataset) batch of a nightly run, as the stages pass it on.

:class:`Batch` is what every stage receives and hands to the next: the XCom payload between the
``extract`` and ``process`` tasks (:meth:`Batch.to_xcom` / :meth:`Batch.from_xcom`: a plain,
JSON-safe dict of references only: object keys, checksums, counts; never rows) and the body of
the backup manifest (:func:`sapnhap.sync.backup.manifest_body`). Its identity is three real
fields, ``run_id``, ``source_id`` and ``dataset``, plus the ``attempt`` (the folder of this extract
in the bucket); ``batch_id`` (the ``ops.batches`` key) is built from them and never parsed back.

Each stage fills its own part and returns a new batch (:func:`dataclasses.replace`):

- extract: ``rows``, ``cursor_from``/``cursor_to``, ``files``, ``unmapped_columns``,
  ``quarantined_files``, ``objects["raw"]``, ``extract_started_at``;
- transform: ``transformed_rows``, ``merged_in_batch``, ``crosswalk_version``, ``text_cleaned``,
  ``text_repaired``, ``date_findings``, ``objects["transformed"|"merged_in_batch"]``;
- validate: ``valid_rows``, ``quarantined_rows``, ``failed_ratio``, ``decision``,
  ``suite_version``, ``data_docs``, ``objects["valid"|"quarantine"|"warnings"|"validation"]``;
- backup: ``manifest_key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# Keys of the XCom payload computed from the fields (kept in it for the task logs and the tests).
DERIVED_KEYS = ("batch_id", "prefix")


def batch_id_for(run_id: str, source_id: str, dataset: str) -> str:
    """The ``ops.batches`` key of a (run, source, dataset): an opaque id, never split back into its parts."""
    return f"{run_id}|{source_id}|{dataset}"


@dataclass(frozen=True)
class Batch:
    """A batch as it goes through the stages (see the module's docstring for who fills what)."""

    run_id: str
    source_id: str
    dataset: str
    run_date: str  # the run's date in Vietnam (the backup folder's date)
    attempt: str  # this extract's folder: a later extract of the same batch never overwrites it
    # extract
    rows: int = 0
    cursor_from: str | None = None
    cursor_to: str | None = None
    files: list[dict] = field(default_factory=list)
    unmapped_columns: list[str] = field(default_factory=list)
    quarantined_files: list[dict] = field(default_factory=list)
    objects: dict[str, dict] = field(default_factory=dict)
    extract_started_at: str | None = None
    # transform
    transformed_rows: int | None = None
    merged_in_batch: int | None = None
    crosswalk_version: str | None = None
    text_cleaned: int | None = None
    text_repaired: int | None = None
    date_findings: list[dict] = field(default_factory=list)
    # validate
    data_docs: list[dict] = field(default_factory=list)
    valid_rows: int | None = None
    quarantined_rows: int | None = None
    failed_ratio: float | None = None
    decision: str | None = None
    suite_version: str | None = None
    # backup
    manifest_key: str | None = None

    @property
    def batch_id(self) -> str:
        return batch_id_for(self.run_id, self.source_id, self.dataset)

    @property
    def prefix(self) -> str:
        """This attempt's folder in the bucket: ``backups/<source>/<dataset>/<date>/<run>/<attempt>/``."""
        from sapnhap import storage

        return storage.batch_prefix(self.source_id, self.dataset, self.run_date, self.run_id, self.attempt)

    def to_xcom(self) -> dict[str, Any]:
        """The plain dict Airflow stores between tasks (references and counts only; JSON-safe)."""
        out: dict[str, Any] = {"batch_id": self.batch_id, "prefix": self.prefix}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = _plain(value)
        return out

    @classmethod
    def from_xcom(cls, payload: Batch | Mapping[str, Any]) -> Batch:
        """The batch of a payload written by :meth:`to_xcom` (a :class:`Batch` is returned as it is).

        A key that is neither a field nor derived is refused: a payload from other code is not guessed at.
        """
        if isinstance(payload, Batch):
            return payload
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - names - set(DERIVED_KEYS))
        if unknown:
            raise ValueError(f"not a batch payload: unknown keys {unknown}")
        batch = cls(**{k: v for k, v in payload.items() if k in names})
        for key in DERIVED_KEYS:
            if key in payload and payload[key] != getattr(batch, key):
                raise ValueError(f"batch payload: {key} {payload[key]!r} does not match its fields ({getattr(batch, key)!r})")
        return batch


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
