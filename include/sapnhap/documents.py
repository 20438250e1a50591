"""Documents (văn bản đến/đi, R16): old agencies re-mapped, quality helpers, attachments kept.

Three things the documents and their processing history need beyond the generic spine:

- **Agencies** (transform): every old issuing, receiving or processing unit is re-mapped through
  the province's agency crosswalk (``include/sapnhap/reference/agencies/agencies_<province>.csv``,
  :mod:`sapnhap.agencies`) by the row in force on the record's own date; the old code and name
  stay beside the new ones, with the crosswalk version.
- **Quality helpers** (validate): the columns the documents suite checks that GX cannot derive
  itself (numbering per issuer and year, the unit the document belongs to, plausible dates).
- **Attachments** (backup): every file a document names is copied to the bucket under a key
  derived from its sha256 and linked from the record (``attachments``: path, key, sha256, bytes).
  A file that cannot be read keeps its document out of the load, in quarantine with the file
  and the record's key named, never silently dropped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from sapnhap.agencies import load_agency_crosswalk, remap_agencies
from sapnhap.datasets import Dataset

log = logging.getLogger(__name__)

AGENCIES_DIR_ENV = "SAPNHAP_AGENCIES_DIR"
DEFAULT_AGENCIES_DIR = Path(__file__).resolve().parent / "reference" / "agencies"

# Helper columns of the documents suite (sapnhap.quality.suites names them).
H_NUMBER_PER_ISSUER_YEAR = "_q_number_per_issuer_year"
H_OWN_AGENCY_STATUS = "_q_own_agency_status"
H_OTHER_AGENCY_STATUS = "_q_other_agency_status"
H_ISSUED_DATE_PLAUSIBLE = "_q_issued_date_plausible"
DOCUMENT_HELPERS = (H_NUMBER_PER_ISSUER_YEAR, H_OWN_AGENCY_STATUS, H_OTHER_AGENCY_STATUS, H_ISSUED_DATE_PLAUSIBLE)
# The founding of the state: no document of a commune or district office is older.
EARLIEST_DOCUMENT = pd.Timestamp("1945-09-02")

ATTACHMENTS_COLUMN = "attachments"
ATTACHMENT_PATHS_COLUMN = "attachment_paths"
ATTACHMENT_CHECK = "attachment.readable"


# ---------------------------------------------------------------------------------------------
# Agencies


def agencies_dir() -> Path:
    return Path(os.environ.get(AGENCIES_DIR_ENV) or DEFAULT_AGENCIES_DIR)


@lru_cache(maxsize=4)
def _crosswalk(directory: str) -> tuple[pd.DataFrame, str]:
    files = sorted(Path(directory).glob("agencies_*.csv"))
    if not files:
        raise FileNotFoundError(f"no agency crosswalk (agencies_<province>.csv) in {directory}")
    frames = [load_agency_crosswalk(f) for f in files]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    return pd.concat(frames, ignore_index=True), f"agencies-{digest[:12]}"


def load_agencies(directory: Path | None = None) -> tuple[pd.DataFrame, str]:
    """Every province's agency crosswalk in the folder, checked, and its version (a content hash)."""
    return _crosswalk(str(directory or agencies_dir()))


def derive_agency_columns(frame: pd.DataFrame, ds: Dataset, *, crosswalk: pd.DataFrame | None = None,
                          version: str | None = None) -> pd.DataFrame:
    """Fill the derived agency columns of ``ds`` (``<prefix>_new_agency_code``/``_name``/``_agency_status``).

    Each old agency is re-mapped by the crosswalk row in force on the record's date (the first
    of the role's date columns that has a value). A dataset without agency roles comes back as is.
    """
    if not ds.agency_roles:
        return frame
    if crosswalk is None:
        crosswalk, version = load_agencies()
    out = frame
    for code_col, date_cols, prefix in ds.agency_roles:
        when = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ms]")
        for col in date_cols:
            when = when.where(when.notna(), pd.to_datetime(out[col], errors="coerce").astype("datetime64[ms]"))
        probe = pd.DataFrame({"_code": out[code_col], "_when": when}, index=out.index)
        mapped = remap_agencies(probe, crosswalk, code_col="_code", date_col="_when", prefix=prefix)
        out = out.copy()
        for suffix in ("new_agency_code", "new_agency_name", "agency_status"):
            values = mapped[f"{prefix}_{suffix}"].to_numpy(dtype=object)
            out[f"{prefix}_{suffix}"] = pd.Series(np.where(pd.isna(values), None, values), index=out.index, dtype=object)
    if "agency_crosswalk_version" in ds.column_names:
        out["agency_crosswalk_version"] = version
    return out


# ---------------------------------------------------------------------------------------------
# Quality helpers


def _text(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), None).astype("string")


def document_helper_columns(df: pd.DataFrame, needed: set[str], *, today: date | None = None) -> dict[str, pd.Series]:
    """The helper columns of the documents suite that ``needed`` names, computed on ``df``.

    - numbering: ``direction|issuer|number|year`` (an incoming document also by its receiver: one
      outgoing number reaches several units), missing where any part is missing;
    - the status of the agency the document belongs to (the issuer of an outgoing document, the
      receiver of an incoming one) and of the other side;
    - the issue date between 1945-09-02 and tomorrow (a date in the future is a typing error).
    """
    out: dict[str, pd.Series] = {}
    direction = _text(df["direction"]) if "direction" in df else pd.Series(pd.NA, index=df.index, dtype="string")
    incoming = (direction == "incoming").fillna(False).astype(bool)
    if H_NUMBER_PER_ISSUER_YEAR in needed and {"issuer_code", "number_symbol", "issued_date"} <= set(df.columns):
        year = pd.to_datetime(df["issued_date"], errors="coerce").dt.year.astype("Int64").astype("string")
        receiver = _text(df["receiver_code"]) if "receiver_code" in df else pd.Series("", index=df.index, dtype="string")
        key = (direction + "|" + _text(df["issuer_code"]) + "|" + _text(df["number_symbol"]).str.upper() + "|" + year
               + "|" + receiver.where(incoming, "").fillna(""))
        out[H_NUMBER_PER_ISSUER_YEAR] = key.astype(object).where(key.notna(), None)
    if {"issuer_agency_status", "receiver_agency_status"} <= set(df.columns):
        issuer, receiver = _text(df["issuer_agency_status"]), _text(df["receiver_agency_status"])
        known_direction = direction.isin(["incoming", "outgoing"]).fillna(False).astype(bool)
        own = receiver.where(incoming, issuer).where(known_direction, pd.NA)
        other = issuer.where(incoming, receiver).where(known_direction, pd.NA)
        if H_OWN_AGENCY_STATUS in needed:
            out[H_OWN_AGENCY_STATUS] = own.astype(object).where(own.notna(), None)
        if H_OTHER_AGENCY_STATUS in needed:
            out[H_OTHER_AGENCY_STATUS] = other.astype(object).where(other.notna(), None)
    if H_ISSUED_DATE_PLAUSIBLE in needed and "issued_date" in df.columns:
        issued = pd.to_datetime(df["issued_date"], errors="coerce")
        latest = pd.Timestamp(today or date.today()) + timedelta(days=1)
        ok = (issued >= EARLIEST_DOCUMENT) & (issued <= latest)
        out[H_ISSUED_DATE_PLAUSIBLE] = pd.Series(pd.array(ok.to_numpy(dtype=bool), dtype="boolean"),
                                                 index=df.index).where(issued.notna(), pd.NA)
    return out


# ---------------------------------------------------------------------------------------------
# Attachments


class AttachmentFolderError(ValueError):
    """The source declares attachments but their folder cannot be found."""


def attachment_key(source_id: str, sha256: str) -> str:
    """Where an attachment lives in the bucket: by content, so a file is stored once and never replaced."""
    return f"attachments/{source_id}/{sha256[:2]}/{sha256}"


def attachment_folder(conn_id: str) -> Path:
    """The folder of an ``fs`` connection holding a source's attachments.

    The environment's ``AIRFLOW_CONN_<ID>`` first (the demo and tests), else Airflow's connection.
    """
    from sapnhap.extract import folder_of

    value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if value is None:
        try:
            from sapnhap.airflow_support import legacy_connection

            value = legacy_connection(conn_id, "files")
        except Exception as exc:  # noqa: BLE001 - any lookup failure means the same to the owner
            raise AttachmentFolderError(f"attachments: connection {conn_id!r} not found ({type(exc).__name__})") from None
    folder = folder_of(value)
    if not folder.is_dir():
        raise AttachmentFolderError(f"attachments: folder of connection {conn_id!r} does not exist")
    return folder


def _paths(value: object) -> list[str]:
    if not isinstance(value, str):
        return []
    return [p.strip() for p in value.split(";") if p.strip()]


def _read_inside(folder: Path, name: str) -> tuple[bytes | None, str | None]:
    """The file's bytes, or why it cannot be read (Vietnamese); never a path outside the folder."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        return None, f"Tệp đính kèm '{name}' nằm ngoài thư mục tệp đính kèm của hệ thống cũ."
    path = folder / rel
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, f"Không tìm thấy tệp đính kèm '{name}' trong thư mục tệp đính kèm của hệ thống cũ."
    except (IsADirectoryError, PermissionError, OSError) as exc:
        return None, f"Không đọc được tệp đính kèm '{name}' ({type(exc).__name__})."


def copy_attachments(s3, source_id: str, folder: Path, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: ANN001
    """Copy every attachment the rows name into the bucket; return (stored, unreadable).

    ``stored``: ``_row_id, source_key, path, key, sha256, bytes`` per file copied (a file already in
    the bucket under its content key is verified, not written again). ``unreadable``: ``_row_id,
    source_key, path, reason_vi`` per file that could not be read.
    """
    from sapnhap import storage

    stored, unreadable = [], []
    written: dict[str, int] = {}
    for row_id, source_key, value in zip(rows["_row_id"], rows["source_key"], rows[ATTACHMENT_PATHS_COLUMN],
                                         strict=True):
        for name in _paths(value):
            data, why = _read_inside(folder, name)
            if data is None:
                unreadable.append({"_row_id": row_id, "source_key": source_key, "path": name, "reason_vi": why})
                continue
            digest = storage.sha256_bytes(data)
            key = attachment_key(source_id, digest)
            if key not in written:
                if not storage.exists(s3, key):
                    storage.put_bytes(s3, key, data, "application/octet-stream")
                # Stored once per content, re-read and checked (size, checksum, encryption) before it is linked.
                storage.verify_object(s3, {"key": key, "sha256": digest, "size": len(data)})
                written[key] = len(data)
            stored.append({"_row_id": row_id, "source_key": source_key, "path": name, "key": key, "sha256": digest,
                           "bytes": len(data)})
    stored_frame = pd.DataFrame(stored, columns=["_row_id", "source_key", "path", "key", "sha256", "bytes"])
    return stored_frame, pd.DataFrame(unreadable, columns=["_row_id", "source_key", "path", "reason_vi"])


def _links(stored: pd.DataFrame) -> dict[int, str]:
    return {
        int(row_id): json.dumps(group[["path", "key", "sha256", "bytes"]].to_dict(orient="records"), ensure_ascii=False)
        for row_id, group in stored.groupby("_row_id", sort=False)
    }


def _quarantine_rows(unreadable: pd.DataFrame, source_id: str) -> pd.DataFrame:
    from sapnhap.quality.validate import QUARANTINE_COLUMNS

    return pd.DataFrame({
        "_row_id": unreadable["_row_id"].astype("int64").to_numpy(),
        "source_id": source_id,
        "source_key": unreadable["source_key"].to_numpy(dtype=object),
        "expectation": ATTACHMENT_CHECK,
        "column": ATTACHMENT_PATHS_COLUMN,
        "value": unreadable["path"].to_numpy(dtype=object),
        "reason_vi": [f"{why} Văn bản (khoá {key}) chưa được nạp để không mất tệp."
                      for why, key in zip(unreadable["reason_vi"], unreadable["source_key"], strict=True)],
        "fix_vi": "Khôi phục tệp đính kèm vào thư mục của hệ thống cũ (hoặc sửa đường dẫn), rồi cập nhật văn bản để đồng bộ lại.",
        "severity": "block",
        "check": ATTACHMENT_CHECK,
    }, columns=QUARANTINE_COLUMNS)


def attach_to_batch(services, source, batch):  # noqa: ANN001, ANN201 - Services, Source, sapnhap.sync.batch.Batch
    """The backup stage's attachment step: copy, link, quarantine the unreadable; return the new batch.

    A batch of a dataset without ``attachment_paths``, or of a source declaring no attachment
    folder, comes back unchanged. Otherwise the valid rows gain ``attachments`` (JSON links) and
    lose the documents whose files cannot be read (they join the quarantine, one row per file); the
    new valid and quarantine frames and an index of every stored file become objects of the batch,
    so the manifest lists them and the load reads them.
    """
    from dataclasses import replace

    from sapnhap import storage

    mapping = source.datasets[batch.dataset]
    conn_id = mapping.attachments
    if not conn_id or ATTACHMENT_PATHS_COLUMN not in mapping.columns:
        return batch
    objects = dict(batch.objects)

    def read(name: str) -> pd.DataFrame:
        import pyarrow.parquet as pq

        obj = objects[name]
        return pq.read_table(io.BytesIO(storage.get_bytes(services.s3, obj["key"], obj["sha256"]))).to_pandas()

    def put(name: str, frame: pd.DataFrame) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
        return storage.put_bytes(services.s3, batch.prefix + name, buf.getvalue(),
                                 "application/vnd.apache.parquet").as_dict()

    transformed = read("transformed")
    valid, quarantine = read("valid"), read("quarantine")
    folder = attachment_folder(conn_id)
    # Every document's files, loaded or not: a quarantined document's attachments are kept too.
    stored, unreadable = copy_attachments(services.s3, source.id, folder, transformed)
    links = _links(stored)
    valid = valid.copy()
    valid[ATTACHMENTS_COLUMN] = valid["_row_id"].map(links).astype(object)
    valid[ATTACHMENTS_COLUMN] = valid[ATTACHMENTS_COLUMN].where(valid[ATTACHMENTS_COLUMN].notna(), None)
    if len(unreadable):
        quarantine = pd.concat([quarantine, _quarantine_rows(unreadable, source.id)], ignore_index=True)
        valid = valid[~valid["_row_id"].isin(unreadable["_row_id"])].reset_index(drop=True)
        log.warning("%s/%s: %d attachment(s) of %d document(s) cannot be read; those documents wait in quarantine",
                    source.id, batch.dataset, len(unreadable), unreadable["_row_id"].nunique())
    objects["valid"] = put("valid.attached.parquet", valid)
    objects["quarantine"] = put("quarantine.attached.parquet", quarantine)
    objects["attachments"] = put("attachments.parquet", stored)
    quarantined_rows = int(quarantine["_row_id"].nunique()) if len(quarantine) else 0
    log.info("%s/%s: %d attached files stored under attachments/%s/ and linked, %d unreadable",
             source.id, batch.dataset, len(stored), source.id, len(unreadable))
    return replace(batch, objects=objects, valid_rows=len(valid), quarantined_rows=quarantined_rows)


def account_for_attachments(s3, files: pd.DataFrame) -> dict[str, int]:  # noqa: ANN001 - S3Config
    """How many of ``files`` (source_id, sha256 per attached file the legacy systems hold) are in the bucket.

    Returns ``{"stored": n, "missing": m}``: the demo fails when a file is missing (nothing lost).
    """
    from sapnhap import storage

    keys = {attachment_key(s, h) for s, h in zip(files["source_id"], files["sha256"], strict=True)}
    stored = sum(storage.exists(s3, k) for k in sorted(keys))
    return {"stored": stored, "missing": len(keys) - stored}
