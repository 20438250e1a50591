"""Validate one batch with its GX suite: split it into loadable rows and quarantine (R9).

One Great Expectations run per batch, in one ephemeral context per worker process (pandas data
source, a whole-frame batch definition per dataset, the suite read from
``expectations/<dataset>.<stage>.json`` and built once per process). Failing rows are identified
by ``_row_id`` through GX's COMPLETE result format. A batch of no rows does not run GX; Data Docs
(personal data masked, failing rows named by source key) are built only for a batch with failures.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sapnhap.datasets import Dataset, get_dataset
from sapnhap.quality.helpers import Registry, add_helper_columns, referenced_columns, registry_from
from sapnhap.quality.masking import mask_citizen_id, mask_name
from sapnhap.quality.suites import load_suite

log = logging.getLogger(__name__)

ROW_ID = "_row_id"
QUARANTINE_COLUMNS = [
    "_row_id", "source_id", "source_key", "expectation", "column", "value",
    "reason_vi", "fix_vi", "severity", "check",
]
Decision = Literal["ok", "warn", "block"]


class QualityGateError(RuntimeError):
    """Raised by :meth:`ValidationOutcome.raise_if_blocked` when a batch must not be loaded."""


@dataclass
class ValidationOutcome:
    """The result of validating one batch.

    valid: rows with no blocking failure (helper columns removed), ready to load.
    quarantine: one row per (failing row, blocking expectation), values of PII columns masked.
    warnings: same shape, for 'warn' expectations (rows are still loaded).
    results: one dict per expectation: expectation, check, column, success, unexpected_count,
        unexpected_percent, severity, notes (and ``skipped`` with a reason when not run).
    failed_ratio: rows with a blocking failure / rows (0.0 for an empty batch).
    decision: 'ok' | 'warn' | 'block' from the source's quality thresholds.
    data_docs_path: the directory of the GX Data Docs site built for this run (docs_dir), or None
        (no docs_dir, or no expectation failed).
    """

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    warnings: pd.DataFrame
    results: list[dict]
    failed_ratio: float
    decision: Decision
    suite_version: str
    data_docs_path: Path | None = None
    suite_name: str = ""
    row_count: int = 0
    blocked_rows: int = 0
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def data_docs_index(self) -> Path | None:
        """The Data Docs site's entry page (``index.html``), when a site was built."""
        return self.data_docs_path / "index.html" if self.data_docs_path is not None else None

    def raise_if_blocked(self) -> None:
        """Raise :class:`QualityGateError` if the decision is 'block'."""
        if self.decision == "block":
            raise QualityGateError(
                f"{self.suite_name}: {self.blocked_rows}/{self.row_count} rows fail blocking checks "
                f"({self.failed_ratio:.1%}); load blocked"
            )


def decide(failed_ratio: float, thresholds: Any = None) -> Decision:
    """'block' when failed_ratio > block_ratio, 'warn' when > warn_ratio, else 'ok'."""
    if thresholds is None:
        from sapnhap.sources import QualityThresholds

        thresholds = QualityThresholds()
    warn_ratio = _threshold(thresholds, "warn_ratio")
    block_ratio = _threshold(thresholds, "block_ratio")
    if failed_ratio > block_ratio:
        return "block"
    if failed_ratio > warn_ratio:
        return "warn"
    return "ok"


def _threshold(thresholds: Any, name: str) -> float:
    return float(thresholds[name] if isinstance(thresholds, dict) else getattr(thresholds, name))


def _masker(ds: Dataset, column: str):
    """The masking function for a canonical column, or None when it holds no personal data."""
    if column not in ds.column_names or not ds.column(column).pii:
        return None
    return mask_citizen_id if ds.column(column).type == "citizen_id" else mask_name


class _DisplayKeys:
    """Row id -> the record's source key as the owners' emails show it (its personal values masked)."""

    def __init__(self, work: pd.DataFrame, ds: Dataset) -> None:
        self._work = work
        self._pii = [c.name for c in ds.columns if c.pii and c.name in work.columns]
        self._positions: pd.Index | None = None
        self._cache: dict[Any, str | None] = {}

    def get(self, row_id: Any) -> str | None:
        if row_id not in self._cache:
            from sapnhap.reports.model import scrub_text

            if self._positions is None:
                self._positions = pd.Index(self._work[ROW_ID])
            row = self._work.iloc[self._positions.get_loc(row_id)]
            self._cache[row_id] = scrub_text(row["source_key"], [row[c] for c in self._pii if pd.notna(row[c])])
        return self._cache[row_id]


def _gx_context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict = {}
    if docs_dir is not None:
        sites = {
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites=sites,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def mask_result(ds: Dataset, kwargs: dict, result: dict) -> int:
    """Mask personal data in one expectation result in place; return how many lists changed."""
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs] + list(kwargs.get("column_list") or [])
    maskers = {c: _masker(ds, c) for c in cols if _masker(ds, c) is not None}
    if not maskers or not result:
        return 0
    only = next(iter(maskers.values())) if len(cols) == 1 else None
    changed = 0
    for key in ("partial_unexpected_list", "unexpected_list"):
        values = result.get(key)
        if values and only is not None and all(not isinstance(v, dict) for v in values):
            result[key] = list(only(pd.Series(values, dtype="object")))
            changed += 1
        elif values:
            result[key] = ["***"] * len(values)
            changed += 1
    counts = result.get("partial_unexpected_counts")
    if counts:
        for item in counts:
            v = item.get("value")
            item["value"] = only(pd.Series([v], dtype="object")).iloc[0] if only is not None and not isinstance(v, (dict, tuple)) else "***"
        changed += 1
    for key in ("unexpected_index_list", "partial_unexpected_index_list"):
        rows = result.get(key)
        if rows and isinstance(rows[0], dict):
            for col, fn in maskers.items():
                if col in rows[0]:
                    masked = fn(pd.Series([r.get(col) for r in rows], dtype="object"))
                    for r, m in zip(rows, masked, strict=True):
                        r[col] = m
            changed += 1
    result.pop("unexpected_index_query", None)
    return changed


def _select(suite: dict, frame_columns: set[str], registry: Registry) -> tuple[list[dict], list[dict]]:
    """Split the suite into expectations to run and result entries for those skipped."""
    run, skipped = [], []
    for exp in suite["expectations"]:
        meta = exp["meta"]
        missing_inputs = [r for r in meta.get("requires", []) if r not in registry.available]
        missing_cols = sorted(referenced_columns(exp) - frame_columns)
        if exp["type"] != "expect_column_to_exist" and (missing_inputs or missing_cols):
            why = (
                f"registry input not given: {', '.join(missing_inputs)}"
                if missing_inputs
                else f"column missing: {', '.join(missing_cols)}"
            )
            skipped.append(_result_entry(exp, success=None, unexpected_count=None, unexpected_percent=None, skipped=why))
        else:
            run.append(exp)
    return run, skipped


def _result_entry(exp: dict, **values: Any) -> dict:
    meta = exp["meta"]
    return {
        "expectation": exp["type"],
        "check": meta["check"],
        "column": meta["column"],
        "severity": meta["severity"],
        "notes": exp.get("notes"),
        **values,
    }


def _failures(frame: pd.DataFrame, exp: dict, row_ids: pd.Index, ds: Dataset) -> pd.DataFrame:
    """Quarantine-shaped rows for the given failing ``_row_id``s of one expectation."""
    meta = exp["meta"]
    positions = pd.Index(frame[ROW_ID]).get_indexer(row_ids)
    picked = frame.iloc[positions]
    value_col = meta.get("value_column") or meta["column"]
    if value_col in frame.columns:
        values = picked[value_col]
        fn = _masker(ds, value_col)
        if fn is not None:
            values = fn(values)
        else:
            values = values.astype("object").where(values.notna(), None).map(_as_report_text)
    else:
        values = pd.Series(None, index=picked.index, dtype="object")
    return pd.DataFrame(
        {
            "_row_id": picked[ROW_ID].to_numpy(),
            "source_id": picked["source_id"].to_numpy() if "source_id" in picked else None,
            "source_key": picked["source_key"].to_numpy() if "source_key" in picked else None,
            "expectation": exp["type"],
            "column": meta["column"],
            "value": values.to_numpy(dtype=object),
            "reason_vi": meta["reason_vi"],
            "fix_vi": meta["fix_vi"],
            "severity": meta["severity"],
            "check": meta["check"],
        }
    )


def _as_report_text(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat(sep=" ") if (v.hour or v.minute or v.second) else v.date().isoformat()
    return str(v)


def _empty_report() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == ROW_ID else "object") for c in QUARANTINE_COLUMNS})


def validate_batch(
    df: pd.DataFrame,
    dataset: str,
    *,
    valid_new_codes: set[str] | None = None,
    valid_old_codes: set[str] | None = None,
    valid_province_prefixes: set[str] | None = None,
    thresholds: Any = None,
    docs_dir: Path | None = None,
    suite_dir: Path | None = None,
    stage: str = "transformed",
    reference: Any = None,
) -> ValidationOutcome:
    """Validate one batch of ``dataset`` and split it into loadable rows and quarantine.

    Registry checks use the explicit code sets, else ``reference`` (a
    ``sapnhap.reference.Reference``: new codes then checked as of the record date), else they
    are skipped and listed as skipped in ``results``. Province prefixes of citizen IDs default
    to '0' + the 63 pre-2025 province codes. ``thresholds`` is a
    ``sources.QualityThresholds`` (or a dict with warn_ratio/block_ratio); None = defaults.
    ``docs_dir``: build a GX Data Docs site there (personal data masked) when an expectation
    failed; a clean batch gets none (``data_docs_path`` is None).
    ``stage``: 'transformed' (default) or 'raw' (the assessment suite; everything warns).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    ds = get_dataset(dataset)
    suite = load_suite(dataset, stage, suite_dir)
    suite_version = str(suite.get("meta", {}).get("suite_version", ""))
    frame = df
    if ROW_ID not in frame.columns:
        if stage != "raw":
            raise ValueError(f"{dataset}: the transformed batch has no {ROW_ID} column")
        frame = frame.assign(**{ROW_ID: range(len(frame))})
    if frame[ROW_ID].isna().any() or not frame[ROW_ID].is_unique:
        raise ValueError(f"{dataset}: {ROW_ID} must be present and unique in the batch")
    input_columns = list(frame.columns)

    registry = registry_from(
        valid_new_codes=valid_new_codes,
        valid_old_codes=valid_old_codes,
        valid_province_prefixes=valid_province_prefixes,
        reference=reference,
    )
    work, helpers = add_helper_columns(frame, ds, suite, registry)
    to_run, results = _select(suite, set(work.columns), registry)

    gx_results = _run_gx(work, ds, suite, to_run, docs_dir, _DisplayKeys(work, ds) if docs_dir is not None and "source_key" in work.columns else None)
    docs_path = gx_results.pop("_docs_path", None)

    n = len(work)
    all_ids = pd.Index(work[ROW_ID])
    block_parts, warn_parts = [], []
    by_id = dict(enumerate(to_run))
    for index, r in gx_results.items():
        exp = by_id[index]
        meta = exp["meta"]
        res = r["result"]
        if r["raised"]:
            log.error("%s: expectation %s raised: %s", suite["name"], meta["check"], r["exception"])
        if exp["type"] == "expect_column_to_exist":
            failing = all_ids if not r["success"] else all_ids[:0]
        else:
            failing = pd.Index(r["failing"])
        count = res.get("unexpected_count")
        if count is None:
            count = len(failing) if not r["success"] else 0
        percent = res.get("unexpected_percent")
        if percent is None:
            percent = (100.0 * count / n) if n else 0.0
        results.append(_result_entry(
            exp, success=bool(r["success"]), unexpected_count=int(count), unexpected_percent=float(percent),
            **({"exception": r["exception"]} if r["raised"] else {}),
        ))
        if len(failing):
            part = _failures(work, exp, failing, ds)
            (block_parts if meta["severity"] == "block" else warn_parts).append(part)
        elif r["raised"] and meta["severity"] == "block":
            # An expectation that could not run cannot vouch for any row.
            block_parts.append(_failures(work, exp, all_ids, ds))

    quarantine = pd.concat(block_parts, ignore_index=True) if block_parts else _empty_report()
    warnings = pd.concat(warn_parts, ignore_index=True) if warn_parts else _empty_report()
    blocked = pd.Index(quarantine[ROW_ID].unique())
    valid = frame.loc[~frame[ROW_ID].isin(blocked), input_columns]
    failed_ratio = (len(blocked) / n) if n else 0.0
    order = {e["meta"]["check"]: i for i, e in enumerate(suite["expectations"])}
    results.sort(key=lambda e: order.get(e["check"], 0))
    return ValidationOutcome(
        valid=valid,
        quarantine=quarantine,
        warnings=warnings,
        results=results,
        failed_ratio=failed_ratio,
        decision=decide(failed_ratio, thresholds),
        suite_version=suite_version,
        data_docs_path=docs_path,
        suite_name=suite["name"],
        row_count=n,
        blocked_rows=len(blocked),
        extra={"helper_columns": helpers},
    )


RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_ID],
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 20,
}
DOCS_SITE = "sapnhap_quality"

# One GX context per worker process, reused by every batch (issue 12): its pandas data source,
# one dataframe asset per dataset, and one suite per (suite, expectations run). A context, suite
# and checkpoint per batch cost seconds whatever the batch's size.
_GX_LOCK = threading.Lock()
_GX_STATE: dict[str, Any] = {}


def _gx_state() -> dict[str, Any]:
    if "context" not in _GX_STATE:
        context = _gx_context(None)
        _GX_STATE.update(context=context, source=context.data_sources.add_pandas("sapnhap_batch"), batches={},
                         suites={})
    return _GX_STATE


def _gx_batch_definition(state: dict, dataset: str):  # noqa: ANN202 - GX's BatchDefinition
    if dataset not in state["batches"]:
        asset = state["source"].add_dataframe_asset(dataset)
        state["batches"][dataset] = asset.add_batch_definition_whole_dataframe("whole_batch")
    return state["batches"][dataset]


def _gx_suite(state: dict, suite: dict, to_run: list[dict]):  # noqa: ANN202 - GX's ExpectationSuite
    """The GX suite of the expectations selected for a batch, built once per process and selection."""
    import great_expectations as gx

    key = (suite["name"], json.dumps(to_run, sort_keys=True, default=str))
    if key not in state["suites"]:
        expectations = [{**exp, "meta": {**exp["meta"], "sapnhap_index": i}} for i, exp in enumerate(to_run)]
        gx_suite = gx.ExpectationSuite(name=suite["name"], expectations=expectations, meta=suite.get("meta"),
                                       notes=suite.get("notes"))
        if len(gx_suite.expectations) != len(expectations):
            raise ValueError(f"{suite['name']}: GX rejected {len(expectations) - len(gx_suite.expectations)} expectations")
        state["suites"][key] = gx_suite
    return state["suites"][key]


@contextmanager
def _swapped(cls: type, name: str, replacement: Any) -> Iterator[None]:
    """``cls.<name>`` replaced by ``replacement(original)`` for the block, then restored (a scoped GX patch)."""
    original = cls.__dict__[name]
    setattr(cls, name, replacement(original))
    try:
        yield
    finally:
        setattr(cls, name, original)


def _configurations_built_once() -> AbstractContextManager[None]:
    """Within one validation run, each expectation's ``configuration`` is built once, not on every read.

    GX 1.x rebuilds an ``ExpectationConfiguration`` from the pydantic model on every access of
    ``Expectation.configuration``, and reads it once per kwarg while planning metrics: ~80 builds
    per expectation per run, a third of a small batch's validation time (issue 12: the fixed cost
    per batch). Nothing mutates an expectation during a run, so the first build stands for the run;
    the property is restored when the run ends. Callers hold ``_GX_LOCK`` (one run at a time).
    """
    from great_expectations.expectations.expectation import Expectation

    built: dict[int, tuple[Any, Any]] = {}

    def once(original: property) -> property:
        def configuration(self: Any) -> Any:
            hit = built.get(id(self))
            if hit is None or hit[0] is not self:
                hit = built[id(self)] = (self, original.fget(self))
            return hit[1]

        return property(configuration)

    return _swapped(Expectation, "configuration", once)


def _empty_results(work: pd.DataFrame, to_run: list[dict]) -> dict | None:
    """What GX reports for a batch of no rows, without running GX; None when an expectation would fail.

    Every expectation of the suites is per row (column map, pair, compound) except
    ``expect_column_to_exist``: on no rows they all pass, with nothing unexpected.
    """
    out: dict[Any, dict] = {}
    for i, exp in enumerate(to_run):
        if exp["type"] == "expect_column_to_exist" and exp["kwargs"].get("column") not in work.columns:
            return None
        if not exp["type"].startswith(("expect_column_values_", "expect_column_pair_values_",
                                       "expect_compound_columns_", "expect_multicolumn_", "expect_column_to_exist")):
            return None
        result = {} if exp["type"] == "expect_column_to_exist" else {
            "element_count": 0, "unexpected_count": 0, "unexpected_percent": None, "partial_unexpected_list": [],
            "missing_count": 0, "missing_percent": None, "unexpected_percent_total": None,
            "unexpected_percent_nonmissing": None, "partial_unexpected_counts": [], "partial_unexpected_index_list": [],
            "unexpected_list": [], "unexpected_index_list": [], "unexpected_index_column_names": [ROW_ID],
        }
        out[i] = {"success": True, "result": result, "raised": False, "exception": None, "failing": []}
    return out


def _run_gx(work: pd.DataFrame, ds: Dataset, suite: dict, to_run: list[dict], docs_dir: Path | None,
            display_keys: Any = None) -> dict:
    """Run the selected expectations once; return {expectation index: result dict}.

    A batch of no rows does not run GX (see :func:`_empty_results`). Data Docs are built in
    ``docs_dir`` only when an expectation failed: a clean batch has nothing to show.
    """
    if not len(work):
        empty = _empty_results(work, to_run)
        if empty is not None:
            return empty
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.validator.v1_validator import Validator

    with _GX_LOCK:
        state = _gx_state()
        batch_definition = _gx_batch_definition(state, ds.name)
        gx_suite = _gx_suite(state, suite, to_run)
        validator = Validator(batch_definition=batch_definition, batch_parameters={"dataframe": work},
                              result_format=RESULT_FORMAT)
        try:
            with _configurations_built_once():
                run = validator.validate_expectation_suite(gx_suite)
            batch_identifier = validator.active_batch_id
        finally:
            # The process's execution engine keeps the batch it loaded: let this batch's frame go.
            batches = state["source"].get_execution_engine().batch_manager
            batches.batch_data_cache.clear()
            batches.reset_batch_cache()
    run.meta["run_id"] = RunIdentifier(run_time=datetime.now(UTC))
    out: dict[Any, dict] = {}
    for r in run.results:
        idx = r.expectation_config.meta.get("sapnhap_index")
        info = r.exception_info or {}
        raised = bool(info.get("raised_exception"))
        result = r.result or {}
        out[idx] = {
            "success": bool(r.success),
            "result": result,
            "raised": raised,
            "exception": info.get("exception_message") if raised else None,
            "failing": [row[ROW_ID] for row in result.get("unexpected_index_list") or []],
        }
    if docs_dir is not None and not all(r["success"] for r in out.values()):
        out["_docs_path"] = _build_data_docs(run, gx_suite, batch_identifier, ds, Path(docs_dir), display_keys)
    return out


def _build_data_docs(run: Any, gx_suite: Any, batch_identifier: Any, ds: Dataset, docs_dir: Path,
                     display_keys: Any) -> Path | None:
    """Build the Data Docs site of one validation run in ``docs_dir``, personal data masked.

    Failing rows are named by the record's source key (as the owners' emails show it), not the
    batch's internal row id. Its own short-lived context: only batches with failures pay for it.
    """
    for r in run.results:
        mask_result(ds, r.expectation_config.kwargs, r.result)
        _name_rows_by_key(r.result, display_keys)
    with _DOCS_LOCK, _templates_compiled_once():
        return _render_data_docs(run, gx_suite, batch_identifier, docs_dir)


def _render_data_docs(run: Any, gx_suite: Any, batch_identifier: Any, docs_dir: Path) -> Path | None:
    import great_expectations as gx
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _gx_context(docs_dir)
    context.suites.add(gx.ExpectationSuite(name=gx_suite.name, expectations=[e.configuration for e in gx_suite.expectations],
                                           meta=gx_suite.meta, notes=gx_suite.notes))
    identifier = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=gx_suite.name),
        run_id=run.meta["run_id"], batch_identifier=batch_identifier,
    )
    context.validation_results_store.set(identifier, run)
    context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[identifier], build_index=True)
    return docs_dir if (docs_dir / "index.html").exists() else None


_DOCS_LOCK = threading.Lock()


@cache
def _compiled_templates() -> Any:
    """The process's Jinja bytecode cache for GX's Data Docs templates (in memory)."""
    import jinja2

    class InMemory(jinja2.BytecodeCache):
        def __init__(self) -> None:
            self.compiled: dict[str, bytes] = {}

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            if bucket.key in self.compiled:
                bucket.bytecode_from_string(self.compiled[bucket.key])

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            self.compiled[bucket.key] = bucket.bytecode_to_string()

    return InMemory()


def _templates_compiled_once() -> AbstractContextManager[None]:
    """GX's Data Docs templates compiled once per process, not once per batch with failures.

    Every Data Docs build makes new Jinja environments (one per page view), each compiling the
    same GX templates again: 40% of a build (issue 12: a small batch with one failing row paid
    ~0.3 s for it). Jinja's bytecode cache (keyed by template, checked against the template's
    source) lets every environment reuse the first compilation. Callers hold ``_DOCS_LOCK``.
    """
    from great_expectations.render.view.view import DefaultJinjaView

    def cached(original: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.env.bytecode_cache = _compiled_templates()

        return __init__

    return _swapped(DefaultJinjaView, "__init__", cached)


def _name_rows_by_key(result: dict | None, display_keys: Any) -> None:
    """Replace ``_row_id`` in GX's unexpected index lists by the record's (scrubbed) source key."""
    if not result or display_keys is None:
        return
    for key in ("unexpected_index_list", "partial_unexpected_index_list"):
        rows = result.get(key)
        if rows and isinstance(rows[0], dict):
            result[key] = [{"source_key": display_keys.get(r.get(ROW_ID)),
                            **{k: v for k, v in r.items() if k != ROW_ID}} for r in rows]
    if result.get("unexpected_index_column_names"):
        result["unexpected_index_column_names"] = ["source_key"]


# --- a batch in chunks ------------------------------------------------------------------------------
# A batch larger than one chunk (sapnhap.sync.frames.chunk_rows) is validated chunk by chunk: every
# row-level expectation runs on each chunk, and the expectations that compare rows with each other
# (uniqueness) run once on the whole batch's key columns only. The outcome is the one frame's:
# the same quarantine and warning rows (in the same order), counts, failed ratio and decision.

WHOLE_BATCH = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


def whole_batch_columns(exp: dict) -> set[str]:
    """The columns a whole-batch expectation needs beside the row's identity: what it reads and reports."""
    meta = exp["meta"]
    return referenced_columns(exp) | {meta.get("value_column") or meta["column"]}


class _Tally:
    """One expectation's results over the chunks, added up as GX adds them over one frame."""

    def __init__(self) -> None:
        self.success, self.raised, self.exception = True, False, None
        self.count = self.elements = self.missing = 0
        self.counted = self.has_missing = True

    def add(self, r: dict, failing: int) -> None:
        res = r["result"]
        self.success &= bool(r["success"])
        if r["raised"] and not self.raised:
            self.raised, self.exception = True, r["exception"]
        count = res.get("unexpected_count")
        if count is None:
            count = failing if not r["success"] else 0
            self.counted = False
        self.count += int(count)
        if res.get("element_count") is None:
            self.counted = False
        self.elements += int(res.get("element_count") or 0)
        if res.get("missing_count") is None:
            self.has_missing = False
        self.missing += int(res.get("missing_count") or 0)

    def percent(self, n: int) -> float:
        percent = None
        if self.counted and self.elements > 0:
            if self.has_missing:
                nonmissing = self.elements - self.missing
                percent = self.count / nonmissing * 100 if nonmissing > 0 else None
            else:
                percent = self.count / self.elements * 100
        return percent if percent is not None else ((100.0 * self.count / n) if n else 0.0)


def validate_chunks(
    read: Any,
    dataset: str,
    *,
    write_valid: Any,
    thresholds: Any = None,
    docs_dir: Path | None = None,
    reference: Any = None,
    suite_dir: Path | None = None,
) -> ValidationOutcome:
    """:func:`validate_batch` for a batch read in chunks; the valid rows of each chunk go to ``write_valid``.

    ``read(columns)`` yields the batch's chunks (only ``columns`` when given, else every column), in
    order, each with its ``_row_id`` (unique over the batch). The outcome's ``valid`` frame is empty:
    its rows went to ``write_valid``; ``extra["valid_rows"]`` counts them. Data Docs are built once,
    in ``docs_dir``, for the first chunk with a failing check (the quarantine holds every failing row).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    ds = get_dataset(dataset)
    suite = load_suite(dataset, "transformed", suite_dir)
    suite_version = str(suite.get("meta", {}).get("suite_version", ""))
    registry = registry_from(valid_new_codes=None, valid_old_codes=None, valid_province_prefixes=None,
                             reference=reference)
    chunks = iter(read(None))
    first = next(chunks)
    input_columns = list(first.columns)
    work, helpers = add_helper_columns(first, ds, suite, registry)
    to_run, results = _select(suite, set(work.columns), registry)
    whole = [i for i, e in enumerate(to_run) if e["type"] in WHOLE_BATCH]
    per_chunk = [i for i in range(len(to_run)) if i not in whole]
    tallies = {i: _Tally() for i in range(len(to_run))}
    block_parts: dict[int, list[pd.DataFrame]] = {i: [] for i in range(len(to_run))}
    warn_parts: dict[int, list[pd.DataFrame]] = {i: [] for i in range(len(to_run))}
    docs: list[Path] = []

    def docs_for_run() -> Path | None:
        # One site per batch: the first chunk with a failing check. A site per chunk cost a third of
        # a large batch's validation and only the first was linked; every failing row is in the quarantine.
        return Path(docs_dir) if docs_dir is not None and not docs else None

    def collect(frame: pd.DataFrame, indexes: list[int], gx: dict) -> set:
        """Add one run's results; return the row ids it blocks."""
        ids = pd.Index(frame[ROW_ID])
        blocked: set = set()
        for local, index in enumerate(indexes):
            r, exp = gx[local], to_run[index]
            meta = exp["meta"]
            if r["raised"]:
                log.error("%s: expectation %s raised: %s", suite["name"], meta["check"], r["exception"])
            failing = (ids if not r["success"] else ids[:0]) if exp["type"] == "expect_column_to_exist" \
                else pd.Index(r["failing"])
            tallies[index].add(r, len(failing))
            part = None
            if len(failing):
                part = _failures(frame, exp, failing, ds)
            elif r["raised"] and meta["severity"] == "block":
                part = _failures(frame, exp, ids, ds)  # an expectation that could not run vouches for no row
            if part is not None:
                (block_parts if meta["severity"] == "block" else warn_parts)[index].append(part)
                if meta["severity"] == "block":
                    blocked.update(part[ROW_ID].tolist())
        return blocked

    def run(frame: pd.DataFrame, indexes: list[int], display: bool) -> set:
        if not indexes:
            return set()
        where = docs_for_run()
        gx = _run_gx(frame, ds, suite, [to_run[i] for i in indexes], where,
                     _DisplayKeys(frame, ds) if display and where is not None and "source_key" in frame.columns else None)
        path = gx.pop("_docs_path", None)
        if path is not None:
            docs.append(path)
        return collect(frame, indexes, gx)

    # The checks across rows, once over the whole batch's key columns (no Data Docs of their own).
    wanted = {ROW_ID, "source_id", "source_key"}.union(*(whole_batch_columns(to_run[i]) for i in whole))
    keys_blocked: set = set()
    n = 0
    if whole:
        # Only rows that can fail a uniqueness check are read whole: those whose key values (hashed)
        # repeat in the batch, and those missing a key value. Every other row is unique by construction.
        keyed = sorted(set().union(*(referenced_columns(to_run[i]) for i in whole)))
        candidates, total = _uniqueness_candidates(read([ROW_ID, *keyed]), keyed)
        narrow = pd.concat([p[p[ROW_ID].isin(candidates)] for p in read([c for c in input_columns if c in wanted])],
                           ignore_index=True)
        gx = _run_gx(narrow, ds, suite, [to_run[i] for i in whole], None)
        for r in gx.values():  # the rows left out were counted by GX as present and expected
            if r["result"].get("element_count") is not None:
                r["result"]["element_count"] += total - len(narrow)
        keys_blocked = collect(narrow, whole, gx)
        del narrow, gx
    valid_rows = 0
    blocked_rows = 0
    for chunk in _chain(first, chunks):
        work, _ = add_helper_columns(chunk, ds, suite, registry)
        n += len(work)
        blocked = run(work, per_chunk, display=True)
        blocked |= keys_blocked.intersection(chunk[ROW_ID].tolist()) if keys_blocked else set()
        blocked_rows += len(blocked)
        valid = chunk.loc[~chunk[ROW_ID].isin(blocked), input_columns]
        valid_rows += len(valid)
        write_valid(valid)
        del work, valid
    for i, exp in enumerate(to_run):
        t = tallies[i]
        results.append(_result_entry(
            exp, success=bool(t.success), unexpected_count=int(t.count), unexpected_percent=float(t.percent(n)),
            **({"exception": t.exception} if t.raised else {}),
        ))
    block = [p for i in range(len(to_run)) for p in block_parts[i]]
    warn = [p for i in range(len(to_run)) for p in warn_parts[i]]
    quarantine = pd.concat(block, ignore_index=True) if block else _empty_report()
    warnings = pd.concat(warn, ignore_index=True) if warn else _empty_report()
    failed_ratio = (blocked_rows / n) if n else 0.0
    order = {e["meta"]["check"]: i for i, e in enumerate(suite["expectations"])}
    results.sort(key=lambda e: order.get(e["check"], 0))
    return ValidationOutcome(
        valid=pd.DataFrame(columns=input_columns),
        quarantine=quarantine,
        warnings=warnings,
        results=results,
        failed_ratio=failed_ratio,
        decision=decide(failed_ratio, thresholds),
        suite_version=suite_version,
        data_docs_path=docs[0] if docs else None,
        suite_name=suite["name"],
        row_count=n,
        blocked_rows=blocked_rows,
        extra={"helper_columns": helpers, "valid_rows": valid_rows, "data_docs_paths": docs},
    )


def _uniqueness_candidates(parts: Any, columns: list[str]) -> tuple[Any, int]:
    """Row ids whose values of ``columns`` repeat in the batch (by a 64-bit hash) or miss a value; and the rows.

    The hashes are searched on disk, partition by partition (:class:`sapnhap.hashing.RepeatFinder`):
    the memory held does not grow with the batch.
    """
    import numpy as np

    from sapnhap.hashing import RepeatFinder, row_hashes

    missing = []
    with RepeatFinder() as finder:
        for part in parts:
            ids = part[ROW_ID].to_numpy(dtype="int64")
            finder.add(row_hashes(part, columns), ids)
            missing.append(ids[part[columns].isna().any(axis=1).to_numpy()])
        repeated = finder.repeated()
        total = finder.rows
    return np.union1d(repeated, np.concatenate(missing)) if missing else repeated, total


def _chain(first: pd.DataFrame, rest: Any) -> Any:
    yield first
    yield from rest
