"""Transform: legacy rows -> canonical rows under the new unit codes, with full lineage.

Nothing is dropped here. Values that cannot be parsed stay visible (``<col>__raw``) for the
quality stage to quarantine with a reason; rows repeated inside one batch are merged and listed.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sapnhap.datasets import Dataset, get_dataset
from sapnhap.dateproof import date_findings
from sapnhap.documents import derive_agency_columns
from sapnhap.sources import DatasetMapping, Source
from sapnhap.textfix import TEXT_REPAIRS_COLUMN, repair_frame
from sapnhap.verify import legacy_row_hashes

MERGER_DATE = pd.Timestamp("2025-07-01")
ISO_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")
RAW_SUFFIX = "__raw"


@dataclass
class TransformResult:
    """Canonical rows ready for validation, and the in-batch duplicates merged into them."""

    frame: pd.DataFrame
    merged_duplicates: pd.DataFrame
    text_cleaned: int = 0  # rows whose text lost control/zero-width characters or non-breaking spaces
    text_repaired: int = 0  # rows whose text was mojibake, repaired, or in a declared legacy encoding, decoded
    date_findings: list[dict] = field(default_factory=list)  # date columns whose format is not proven


# Every character Python's str.strip() removes, as an RE2 class: trimming in Arrow stays identical.
_PY_WHITESPACE = "".join(f"\\x{{{c:x}}}" for c in range(0x3001) if chr(c).isspace())
_STRIP_RE = f"^[{_PY_WHITESPACE}]+|[{_PY_WHITESPACE}]+$"


def normalize_text(series: pd.Series) -> pd.Series:
    """NFC-normalize and strip text; empty strings become missing.

    Legacy systems store decomposed Unicode (NFD) as often as composed; comparing or indexing
    them without normalizing splits one name into two. Runs in Arrow (no per-value Python).
    """
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        # Already Arrow text (pandas' str columns, as read from Parquet): no Python object per value.
        arr = pa.chunked_array(series.array.__arrow_array__()).combine_chunks().cast(pa.string())
    else:
        values = series.astype("object")
        try:
            arr = pa.array(values.to_numpy(), type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Not all text (numbers in a spreadsheet column): the values' str(), as the legacy text.
            mask = values.notna()
            arr = pa.array([str(v) if m else None for v, m in zip(values, mask, strict=True)], type=pa.string())
    arr = pc.replace_substring_regex(pc.utf8_normalize(arr, "NFC"), _STRIP_RE, "")
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=series.index, name=series.name, dtype="object")


def parse_dates(series: pd.Series, fmt: str, *, with_time: bool) -> tuple[pd.Series, pd.Series]:
    """Parse legacy date text with the source's format, falling back to ISO forms.

    Returns (parsed datetime64 series, raw text where a non-empty value did not parse).
    """
    text = series.astype("object").where(series.notna(), None)
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    formats = [f for f in ISO_DATE_FORMATS if f != fmt]
    if with_time:
        formats = [fmt.split(" ")[0], *formats]
    for alt in formats:
        missing = parsed.isna() & text.notna()
        if not missing.any():
            break
        parsed = parsed.where(~missing, pd.to_datetime(text.where(missing), format=alt, errors="coerce"))
    bad = parsed.isna() & text.notna()
    raw = text.where(bad, None)
    if not with_time:
        parsed = parsed.dt.normalize()
    return parsed.astype("datetime64[ms]"), raw


def pad_code(series: pd.Series, width: int) -> pd.Series:
    """Zero-pad numeric codes that lost their leading zeros (spreadsheets do that)."""
    text = series.astype("object").where(series.notna(), None)
    stripped = text.str.strip()  # not a str (a number from a spreadsheet): kept as it is
    text = stripped.where(stripped.notna(), text)
    digits = text.str.fullmatch(r"\d+").fillna(False).astype(bool)
    short = digits & (text.str.len() < width)
    return text.where(~short, text.str.zfill(width)).where(text != "", None)


def row_hash(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A stable 64-bit content hash per row (hex), over the canonical columns only.

    Each column's values as text (missing: ``<NA>``), hashed with pandas' ``hash_array`` and
    combined as ``hash_pandas_object`` combines columns. The text of a datetime is its
    ``str(Timestamp)``, formatted in numpy: no Python object per value (the hashes are those
    of every release before; a changed hash would report every record as updated).
    """
    from pandas.core.util.hashing import combine_hash_arrays

    if not len(frame):
        return pd.Series([], index=frame.index, dtype="object")
    hashes = (pd.util.hash_array(_hash_text(frame[c]), categorize=False) for c in columns)
    hashed = combine_hash_arrays(hashes, len(columns))
    return pd.Series(np.char.mod("%016x", hashed), index=frame.index, dtype="object")


def _hash_text(series: pd.Series) -> np.ndarray:
    """The values of a column as the text its row hash covers: an object array, pd.NA where missing."""
    missing = series.isna().to_numpy()
    if isinstance(series.dtype, np.dtype) and series.dtype.kind == "M":
        values = series.to_numpy()
        text = np.char.replace(np.datetime_as_string(values, unit="s"), "T", " ").astype(object)
        fraction = ~missing & (values != values.astype("datetime64[s]"))
        if fraction.any():  # str(Timestamp) shows sub-second parts (rare in legacy data)
            text[fraction] = [str(v) for v in series[fraction]]
    elif series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        text = series.to_numpy(dtype=object, copy=True)
    else:
        as_text = series.astype("object").where(series.notna(), None).astype("string")
        return as_text.array.to_numpy()
    text[missing] = pd.NA
    return text


def _canonical(raw: pd.DataFrame, ds: Dataset, mapping: DatasetMapping) -> pd.DataFrame:
    out = pd.DataFrame(index=raw.index)
    for col in ds.columns:
        legacy = mapping.columns.get(col.name)
        out[col.name] = raw[legacy] if legacy is not None else None
    for col in ds.columns:
        series = out[col.name]
        if col.type in ("date", "timestamp"):
            fmt = mapping.date_format if col.type == "date" else mapping.timestamp_format
            out[col.name], raw_text = parse_dates(normalize_text(series), fmt, with_time=col.type == "timestamp")
            if raw_text.notna().any():
                out[col.name + RAW_SUFFIX] = raw_text
        elif col.type == "int":
            text = normalize_text(series)
            number = pd.to_numeric(text, errors="coerce")
            out[col.name] = number.astype("Int64")
            bad = number.isna() & text.notna()
            if bad.any():
                out[col.name + RAW_SUFFIX] = text.where(bad, None)
        elif col.type in ("code2", "code3", "code5"):
            out[col.name] = pad_code(normalize_text(series), int(col.type[-1]))
        elif col.type == "citizen_id":
            out[col.name] = normalize_text(series).str.replace(r"[\s.\-]", "", regex=True)
        else:
            out[col.name] = normalize_text(series)
        if col.name in mapping.values:
            values = {unicodedata.normalize("NFC", k): v for k, v in mapping.values[col.name].items()}
            mapped = out[col.name].map(values)
            out[col.name] = mapped.where(mapped.notna(), out[col.name])
    return out


def _source_key(raw: pd.DataFrame, primary_key: list[str]) -> np.ndarray:
    """The legacy primary key as text, columns joined by '|' (missing parts empty), per row."""
    if not len(raw):
        return np.array([], dtype=object)
    parts = [raw[c].astype("object").where(raw[c].notna(), "").astype(str).to_numpy(dtype=object) for c in primary_key]
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key


def _dedupe(frame: pd.DataFrame, ds: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge rows repeating a record or a natural key inside the batch: the latest ``updated_at`` wins.

    A record (``source_key``) read twice, e.g. its legacy row and its requeued correction, keeps
    its latest version (on a tie, the row read last), even when the two carry different natural
    keys: one record is one row. Then rows of different records sharing a natural key are merged
    into the latest one. Every dropped row is listed with the record it went to.
    """
    key = list(ds.natural_key)
    by_time = ["updated_at"] if "updated_at" in frame else []
    in_time = frame.sort_values(by_time, kind="stable", na_position="first") if by_time else frame
    repeated = in_time.duplicated(subset=["source_key"], keep="last")
    repeated_index = repeated[repeated].index
    # The merged rows keep the hash of their legacy row (verification compares it later).
    listed = ["source_key", *key, *(["legacy_row_hash"] if "legacy_row_hash" in frame else [])]
    same = frame.loc[repeated_index, listed].copy()
    same["kept_source_key"] = same["source_key"]
    same["reason"] = "same_record_in_batch"
    frame = frame.drop(index=repeated_index)

    keyed = frame[key].notna().all(axis=1)
    order = frame.assign(_has_key=keyed).sort_values(
        ["updated_at", "source_key"] if "updated_at" in frame else ["source_key"], kind="stable", na_position="first"
    )
    dup = order[keyed.loc[order.index]].duplicated(subset=key, keep="last")
    dup_index = dup[dup].index
    survivors = frame.drop(index=dup_index)
    kept = order[keyed.loc[order.index]].drop_duplicates(subset=key, keep="last").set_index(key)["source_key"]
    merged = frame.loc[dup_index, listed].copy()
    merged["kept_source_key"] = kept.reindex(pd.MultiIndex.from_frame(merged[key]) if len(key) > 1 else merged[key[0]]).to_numpy()
    merged["reason"] = "duplicate_in_batch"
    # Merges into another record first: a repeated record's ops row is keyed like its own merge's.
    merged = merged.reset_index(drop=True)
    return survivors, pd.concat([merged, same], ignore_index=True) if len(same) else merged


def record_keys(frame: pd.DataFrame) -> pd.Series:
    """The platform-wide key of a legacy record: ``<source_id>:<source_key>`` (decisions are keyed by it)."""
    return frame["source_id"] + ":" + frame["source_key"]


def transform_frame(
    raw: pd.DataFrame,
    source: Source,
    dataset: str,
    *,
    reference=None,  # noqa: ANN001 - sapnhap.reference.Reference, imported lazily
    split_rules: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
) -> TransformResult:
    """Map one raw extract onto the canonical dataset and the new unit codes.

    Adds lineage (source_id, source_key, old codes, new codes, mapping method/status,
    crosswalk version, unit scheme, record era, record hash) to every row.

    The same in three steps for a batch read in chunks (:mod:`sapnhap.sync.transform`):
    :func:`prepare_rows` per chunk, :func:`dedupe_rows` once on the whole batch's keys, then
    :func:`finish_rows` per chunk with the chunk's first row id.
    """
    ds = get_dataset(dataset)
    prepared = prepare_rows(raw, source, dataset)
    findings = date_findings_of(prepared, source, dataset)
    frame, merged = _dedupe(prepared.frame, ds)
    frame = finish_rows(frame, source, dataset, reference=reference, split_rules=split_rules, decisions=decisions)
    return TransformResult(frame, merged, prepared.text_cleaned, prepared.text_repaired, findings)


@dataclass
class PreparedRows:
    """Canonical rows of (a chunk of) a batch before in-batch duplicates are merged."""

    frame: pd.DataFrame
    text_cleaned: int
    text_repaired: int
    dates: pd.DataFrame  # the legacy date columns (repaired text), for the date-format evidence


def date_formats_of(source: Source, dataset: str) -> dict[str, str | None]:
    """Canonical date column -> the format the source declares for it (the columns the source maps)."""
    ds, mapping = get_dataset(dataset), source.datasets[dataset]
    return {
        col.name: mapping.date_format if col.type == "date" else mapping.timestamp_format
        for col in ds.columns if col.type in ("date", "timestamp") and col.name in mapping.columns
    }


def date_findings_of(prepared: PreparedRows, source: Source, dataset: str) -> list[dict]:
    """Dates proven by the values, not assumed from the source file (counts only, never values)."""
    return date_findings(prepared.dates, date_formats_of(source, dataset))


def prepare_rows(raw: pd.DataFrame, source: Source, dataset: str) -> PreparedRows:
    """Legacy rows -> canonical rows with their keys and hashes (row by row: a chunk gives its rows' part)."""
    ds = get_dataset(dataset)
    mapping = source.datasets[dataset]
    missing = [c for c in mapping.primary_key if c not in raw.columns]
    if missing:
        raise ValueError(f"{source.id}/{dataset}: primary key columns missing from extract: {missing}")
    # Text is cleaned at the boundary: every mapped value, before anything parses it. The record's
    # identity (source_key, and the legacy row hash sapnhap.verify compares inside the legacy
    # database) stays the text as extracted, so a repaired record is the same legacy row.
    extracted = raw
    labels = {legacy: canonical for canonical, legacy in mapping.columns.items()}
    # A column holding TCVN3/VNI bytes comes back as Latin text: decoded with the codec declared for it.
    raw, repairs = repair_frame(raw, labels, legacy_codecs=mapping.legacy_codecs(source.kind))
    date_formats = date_formats_of(source, dataset)
    dates = pd.DataFrame({c: raw[mapping.columns[c]] for c in date_formats if mapping.columns[c] in raw}, index=raw.index)
    frame = _canonical(raw, ds, mapping)
    # Old issuing/receiving/processing units -> the new structure (documents), before the record hash.
    frame = derive_agency_columns(frame, ds)
    frame[TEXT_REPAIRS_COLUMN] = repairs.flags
    # PostgreSQL cannot store a NUL: the only character a key loses.
    frame.insert(0, "source_key", pd.Series(_source_key(extracted, mapping.primary_key), index=raw.index, dtype="object")
                 .str.replace("\x00", "", regex=False))
    frame.insert(0, "source_id", source.id)
    frame["record_hash"] = row_hash(frame, ds.column_names)
    # The legacy row as extracted, hashed as sapnhap.verify hashes it inside the legacy database.
    frame["legacy_row_hash"] = legacy_row_hashes(extracted, mapping)
    return PreparedRows(frame, repairs.cleaned_rows, repairs.repaired_rows + repairs.decoded_rows, dates)


def dedupe_columns(frame: pd.DataFrame, ds: Dataset) -> list[str]:
    """The columns :func:`dedupe_rows` reads: the record, its natural key, its time and its legacy hash."""
    return [c for c in ["source_key", *ds.natural_key, "updated_at", "legacy_row_hash"] if c in frame.columns]


def dedupe_rows(keys: pd.DataFrame, ds: Dataset) -> tuple[pd.Index, pd.DataFrame]:
    """The in-batch merge (:func:`_dedupe`) on the batch's :func:`dedupe_columns` only, indexed by row position.

    Returns the positions of the rows kept and the merged rows, exactly as :func:`transform_frame`
    gives them for the whole batch.
    """
    survivors, merged = _dedupe(keys, ds)
    return survivors.index, merged


def finish_rows(
    frame: pd.DataFrame,
    source: Source,
    dataset: str,
    *,
    reference=None,  # noqa: ANN001 - sapnhap.reference.Reference, imported lazily
    split_rules: pd.DataFrame | None = None,
    decisions: pd.DataFrame | None = None,
    first_row_id: int = 0,
) -> pd.DataFrame:
    """Deduplicated canonical rows -> new unit codes, record era, scheme and ``_row_id`` (from ``first_row_id``)."""
    ds = get_dataset(dataset)
    if ds.has_unit:
        frame = _map_units(frame, ds, reference, split_rules, decisions)
    else:
        for col in ("old_province_code", "old_district_code", "new_province_code", "new_commune_code",
                    "mapping_method", "mapping_status", "mapping_candidates"):
            frame[col] = None
        frame["crosswalk_version"] = reference.version if reference is not None else None
        frame["flag_old_code_after_merger"] = False
    record_date = frame[ds.record_date]
    frame["record_era"] = np.where(record_date.isna(), None, np.where(record_date < MERGER_DATE, "before_merger", "after_merger"))
    # Every legacy system keys its records by pre-2025 units: the rows are old-scheme data.
    frame["unit_scheme"] = "old"
    frame = frame.reset_index(drop=True)
    frame.insert(0, "_row_id", np.arange(first_row_id, first_row_id + len(frame), dtype="int64"))
    return frame


def _map_units(
    frame: pd.DataFrame,
    ds: Dataset,
    reference,  # noqa: ANN001
    split_rules: pd.DataFrame | None,
    decisions: pd.DataFrame | None,
) -> pd.DataFrame:
    from sapnhap.reference import convert

    frame = frame.copy()
    frame["record_key"] = record_keys(frame)
    converted = convert.convert_codes(
        frame,
        reference,
        old_commune_col="old_commune_code",
        address_detail_col="address_detail" if "address_detail" in frame else None,
        record_date_col=ds.record_date,
        rules=split_rules,
        decisions=decisions,
        record_key_col="record_key",
    )
    communes = reference.old_units[reference.old_units["level"] == "commune"][["code", "parent_code", "province_code"]]
    parents = communes.rename(
        columns={"code": "old_commune_code", "parent_code": "old_district_code", "province_code": "old_province_code"}
    ).drop_duplicates("old_commune_code")
    converted = converted.drop(columns=[c for c in ("old_district_code", "old_province_code") if c in converted])
    converted = converted.merge(parents, on="old_commune_code", how="left")
    converted.index = frame.index
    return converted.drop(columns=["record_key"])
