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


def _crosswalk_files(directory: str) -> list[tuple[Path, bytes]]:
    files = sorted(Path(directory).glob("agencies_*.csv"))
    if not files:
        raise FileNotFoundError(f"no agency crosswalk (agencies_<province>.csv) in {directory}")
    return [(f, f.read_bytes()) for f in files]


def _version_of(contents: list[tuple[Path, bytes]]) -> str:
    return f"agencies-{hashlib.sha256(b''.join(data for _, data in contents)).hexdigest()[:12]}"


@lru_cache(maxsize=8)
def _crosswalk(directory: str, version: str) -> pd.DataFrame:  # noqa: ARG001 - the version keys the cache
    return pd.concat([load_agency_crosswalk(f) for f, _ in _crosswalk_files(directory)], ignore_index=True)


def load_agencies(directory: Path | None = None) -> tuple[pd.DataFrame, str]:
    """Every province's agency crosswalk in the folder, checked, and its version (a content hash).

    The files are read each call (a province may publish a new version while the scheduler runs);
    the parsed table is cached per version.
    """
    folder = str(directory or agencies_dir())
    version = _version_of(_crosswalk_files(folder))
    return _crosswalk(folder, version), version


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


def _read_object(services, objects: dict, name: str) -> pd.DataFrame:  # noqa: ANN001 - Services
    import pyarrow.parquet as pq

    from sapnhap import storage

    obj = objects[name]
    return pq.read_table(io.BytesIO(storage.get_bytes(services.s3, obj["key"], obj["sha256"]))).to_pandas()


def _put_object(services, batch, name: str, frame: pd.DataFrame) -> dict:  # noqa: ANN001 - Services, Batch
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sapnhap import storage

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, compression="zstd")
    return storage.put_bytes(services.s3, batch.prefix + name, buf.getvalue(), "application/vnd.apache.parquet").as_dict()


def _with_quarantine(services, batch, objects: dict, valid: pd.DataFrame, quarantine: pd.DataFrame,  # noqa: ANN001
                     suffix: str):  # noqa: ANN202
    from dataclasses import replace

    objects["valid"] = _put_object(services, batch, f"valid.{suffix}.parquet", valid)
    objects["quarantine"] = _put_object(services, batch, f"quarantine.{suffix}.parquet", quarantine)
    quarantined_rows = int(quarantine["_row_id"].nunique()) if len(quarantine) else 0
    return replace(batch, objects=objects, valid_rows=len(valid), quarantined_rows=quarantined_rows)


def check_platform_numbering(services, source, batch):  # noqa: ANN001, ANN201 - Services, Source, Batch
    """The backup stage's numbering step: a document whose number another platform record holds waits.

    The suite catches a number and symbol used twice in one batch; this catches one already held by
    a record of another batch or source (:func:`numbering_taken`): the record already on the
    platform stays, the newcomer joins the quarantine with both named. A batch of another dataset,
    or with no conflict, comes back unchanged.
    """
    from sapnhap import db

    if batch.dataset != "documents" or "valid" not in batch.objects:
        return batch
    objects = dict(batch.objects)
    valid = _read_object(services, objects, "valid")
    with db.connect(services.platform_dsn, "backup") as conn:
        taken = numbering_taken(conn, valid)
    if taken.empty:
        return batch
    quarantine = pd.concat([_read_object(services, objects, "quarantine"), _numbering_quarantine(taken, valid)],
                           ignore_index=True)
    valid = valid[~valid["_row_id"].isin(taken["_row_id"])].reset_index(drop=True)
    log.warning("%s/%s: %d document(s) carry a number and symbol another platform record holds; they wait in quarantine",
                source.id, batch.dataset, len(taken))
    return _with_quarantine(services, batch, objects, valid, quarantine, "numbered")


CLASSIFIED_COLUMNS = ("summary",)


def mask_classified_failures(failures: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Quarantine or warning rows with a classified document's summary kept out of them.

    A failure on the summary of a document whose security level is not ``normal`` shows
    :data:`CLASSIFIED_SUMMARY_VI` as its value, and the summary's text is cut from any reason:
    these rows reach the owners' emails, the quarantine pages and downloads.
    """
    if failures.empty or "security_level" not in rows or not set(CLASSIFIED_COLUMNS) & set(rows.columns):
        return failures
    by_row = rows.drop_duplicates("_row_id").set_index("_row_id")
    ids = failures["_row_id"]
    level = ids.map(by_row["security_level"]).astype(object)
    classified = (level != "normal").to_numpy(dtype=bool)
    if not classified.any():
        return failures
    out = failures.copy()
    for column in CLASSIFIED_COLUMNS:
        if column not in by_row:
            continue
        secret = ids.map(by_row[column]).astype(object)
        on_column = (out["column"] == column).to_numpy(dtype=bool) & classified & secret.notna().to_numpy(dtype=bool)
        out.loc[on_column, "value"] = CLASSIFIED_SUMMARY_VI
        for text_col in ("reason_vi", "fix_vi"):
            if text_col in out:
                out[text_col] = [t.replace(v, CLASSIFIED_SUMMARY_VI) if c and isinstance(t, str) and isinstance(v, str) and v
                                 else t for t, v, c in zip(out[text_col], secret, classified, strict=True)]
    return out


def mask_classified_batch(services, batch):  # noqa: ANN001, ANN201 - Services, Batch
    """The backup stage's last documents step: :func:`mask_classified_failures` on the batch's
    quarantine and warnings (rewritten only when something was masked)."""
    if batch.dataset != "documents" or "transformed" not in batch.objects:
        return batch
    from dataclasses import replace

    objects = dict(batch.objects)
    rows = None
    for name in ("quarantine", "warnings"):
        if name not in objects:
            continue
        failures = _read_object(services, objects, name)
        if failures.empty or not {"column", "_row_id"} <= set(failures.columns):
            continue
        rows = _read_object(services, objects, "transformed") if rows is None else rows
        masked = mask_classified_failures(failures, rows)
        if not masked.equals(failures):
            objects[name] = _put_object(services, batch, f"{name}.classified.parquet", masked)
    return replace(batch, objects=objects) if objects != batch.objects else batch


def attach_to_batch(services, source, batch):  # noqa: ANN001, ANN201 - Services, Source, sapnhap.sync.batch.Batch
    """The backup stage's documents steps: numbering on the platform, then attachments; return the new batch.

    First :func:`check_platform_numbering` and :func:`mask_classified_batch`. Then, a batch of a dataset without ``attachment_paths``,
    or of a source declaring no attachment folder, comes back as it is. Otherwise the valid rows gain
    ``attachments`` (JSON links) and lose the documents whose files cannot be read (they join the
    quarantine, one row per file); the new valid and quarantine frames and an index of every stored
    file become objects of the batch, so the manifest lists them and the load reads them.
    """
    batch = mask_classified_batch(services, check_platform_numbering(services, source, batch))
    mapping = source.datasets[batch.dataset]
    conn_id = mapping.attachments
    if not conn_id or ATTACHMENT_PATHS_COLUMN not in mapping.columns:
        return batch
    objects = dict(batch.objects)
    transformed = _read_object(services, objects, "transformed")
    valid, quarantine = _read_object(services, objects, "valid"), _read_object(services, objects, "quarantine")
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
    objects["attachments"] = _put_object(services, batch, "attachments.parquet", stored)
    log.info("%s/%s: %d attached files stored under attachments/%s/ and linked, %d unreadable",
             source.id, batch.dataset, len(stored), source.id, len(unreadable))
    return _with_quarantine(services, batch, objects, valid, quarantine, "attached")


def account_for_attachments(s3, files: pd.DataFrame) -> dict[str, int]:  # noqa: ANN001 - S3Config
    """How many of ``files`` (source_id, sha256 per attached file the legacy systems hold) are in the bucket.

    Returns ``{"stored": n, "missing": m}``: the demo fails when a file is missing (nothing lost).
    """
    from sapnhap import storage

    keys = {attachment_key(s, h) for s, h in zip(files["source_id"], files["sha256"], strict=True)}
    stored = sum(storage.exists(s3, k) for k in sorted(keys))
    return {"stored": stored, "missing": len(keys) - stored}


# ---------------------------------------------------------------------------------------------
# Numbering unique per issuer and year across the platform


PLATFORM_NUMBER_CHECK = "unique.number_per_issuer_year.platform"


def _numbering_keys(frame: pd.DataFrame) -> pd.Series:
    return document_helper_columns(frame, {H_NUMBER_PER_ISSUER_YEAR})[H_NUMBER_PER_ISSUER_YEAR]


def numbering_taken(conn, rows: pd.DataFrame) -> pd.DataFrame:  # noqa: ANN001 - psycopg connection
    """The documents of ``rows`` whose number and symbol another platform record already holds.

    Same key as the suite's in-batch check (direction, issuer, number and symbol, year; an incoming
    one also by its receiver), looked up in ``core.documents`` among the records still in their
    legacy system. The same record again (same ``source_id`` and ``source_key``, a re-sync) or the
    same ``document_code`` (the load merges it) is no conflict. Returns ``_row_id, source_id,
    source_key, number_symbol`` and the holder (``held_by_code``, ``held_by_source_id``,
    ``held_by_source_key``), one row per conflicting document (its first holder by code).
    """
    columns = ["_row_id", "source_id", "source_key", "number_symbol", "held_by_code", "held_by_source_id",
               "held_by_source_key"]
    if rows.empty or not {"issuer_code", "number_symbol", "issued_date"} <= set(rows.columns):
        return pd.DataFrame(columns=columns)
    keys = _numbering_keys(rows)
    wanted = rows[keys.notna()]
    if wanted.empty:
        return pd.DataFrame(columns=columns)
    pairs = sorted({(i, n.upper()) for i, n in zip(wanted["issuer_code"], wanted["number_symbol"], strict=True)})
    cur = conn.execute(
        """SELECT document_code, direction, issuer_code, number_symbol, issued_date, receiver_code, source_id, source_key
           FROM core.documents
           WHERE deleted_in_source_at IS NULL
             AND (issuer_code, upper(number_symbol)) IN (SELECT * FROM unnest(%s::text[], %s::text[]))""",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    )
    held = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    if held.empty:
        return pd.DataFrame(columns=columns)
    held["_key"] = _numbering_keys(held)
    mine = wanted.assign(_key=keys[keys.notna()])
    both = mine.merge(held.sort_values("document_code"), on="_key", suffixes=("", "_held"))
    other = ((both["source_id"] != both["source_id_held"]) | (both["source_key"] != both["source_key_held"])) & (
        both["document_code"] != both["document_code_held"])
    hits = both[other].drop_duplicates("_row_id")
    return pd.DataFrame({
        "_row_id": hits["_row_id"].to_numpy(), "source_id": hits["source_id"].to_numpy(dtype=object),
        "source_key": hits["source_key"].to_numpy(dtype=object),
        "number_symbol": hits["number_symbol"].to_numpy(dtype=object),
        "held_by_code": hits["document_code_held"].to_numpy(dtype=object),
        "held_by_source_id": hits["source_id_held"].to_numpy(dtype=object),
        "held_by_source_key": hits["source_key_held"].to_numpy(dtype=object),
    }, columns=columns)


def _numbering_quarantine(taken: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    from sapnhap.quality.validate import QUARANTINE_COLUMNS

    by_row = rows.set_index("_row_id")
    year = pd.to_datetime(by_row.loc[taken["_row_id"], "issued_date"], errors="coerce").dt.year
    issuer = by_row.loc[taken["_row_id"], "issuer_code"].to_numpy(dtype=object)
    reasons = [
        f"Số, ký hiệu '{n}' của cơ quan {i} năm {int(y) if pd.notna(y) else ''} đã có trên nền tảng ở văn bản "
        f"{code} (hệ thống {sid}, khoá {skey}). Văn bản này chưa được nạp để không trùng số."
        for n, i, y, code, sid, skey in zip(taken["number_symbol"], issuer, year, taken["held_by_code"],
                                            taken["held_by_source_id"], taken["held_by_source_key"], strict=True)
    ]
    return pd.DataFrame({
        "_row_id": taken["_row_id"].astype("int64").to_numpy(),
        "source_id": taken["source_id"].to_numpy(dtype=object),
        "source_key": taken["source_key"].to_numpy(dtype=object),
        "expectation": PLATFORM_NUMBER_CHECK,
        "column": "number_symbol",
        "value": taken["number_symbol"].to_numpy(dtype=object),
        "reason_vi": reasons,
        "fix_vi": "Đối chiếu với văn bản đã có: nếu là cùng một văn bản nhập hai lần, hủy bản nhập sau trong hệ thống "
                  "cũ; nếu là văn bản khác, sửa số, ký hiệu cho đúng sổ đăng ký rồi cập nhật để đồng bộ lại.",
        "severity": "block",
        "check": PLATFORM_NUMBER_CHECK,
    }, columns=QUARANTINE_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Platform: who may read a classified document's summary; the published agency crosswalk


DOCUMENT_READER_ROLE = "sapnhap_document_reader"
# What a reader without clearance sees in place of a classified document's summary (trích yếu).
CLASSIFIED_SUMMARY_VI = "[Trích yếu văn bản mật: chỉ người được cấp quyền đọc văn bản mật xem được]"
AGENCY_TABLES = ("agency_crosswalk_versions", "agency_crosswalk", "agency_remaps")


def documents_access_ddl() -> str:
    """Views of the documents with the summary masked by security level, the lookups through them,
    and the registry tables of the published agency crosswalk.

    ``core.v_documents`` and ``history.v_documents``: the summary of a document whose
    ``security_level`` is not ``normal`` reads :data:`CLASSIFIED_SUMMARY_VI` unless the reader is a
    member of :data:`DOCUMENT_READER_ROLE` (the view runs with its owner's rights on the table and
    the reader's identity). ``core.find_documents_by_old_agency`` / ``_by_new_agency`` read them.
    """
    from sapnhap.datasets import DATASETS
    from sapnhap.platform import LINEAGE_DDL

    names = [c.name for c in DATASETS["documents"].columns] + [n for n, _ in LINEAGE_DDL]
    mask = CLASSIFIED_SUMMARY_VI.replace("'", "''")

    def view_columns(extra: tuple[str, ...] = ()) -> str:
        return ", ".join(
            f"CASE WHEN r.security_level = 'normal' OR core.document_summary_cleared() THEN r.summary ELSE '{mask}' "
            "END AS summary" if c == "summary" else f"r.{c}" for c in [*names, *extra])

    cols = ", ".join(names)

    def as_of_rows() -> str:
        return f"""
        SELECT {cols} FROM core.v_documents WHERE valid_from < (as_of + 1)
        UNION ALL
        SELECT {cols} FROM history.v_documents WHERE valid_from < (as_of + 1) AND valid_to >= (as_of + 1)"""

    return f"""
-- Classified documents (R16): the summary only for the role cleared to read it.
CREATE OR REPLACE FUNCTION core.document_summary_cleared() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DOCUMENT_READER_ROLE}'
                   AND pg_has_role(current_user, oid, 'MEMBER')) $$;
CREATE OR REPLACE VIEW core.v_documents AS SELECT {view_columns()} FROM core.documents r;
CREATE OR REPLACE VIEW history.v_documents AS
    SELECT {view_columns(("history_id", "valid_to", "change"))} FROM history.documents r;
CREATE OR REPLACE FUNCTION core.find_documents_by_old_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM ({as_of_rows()}) r
    WHERE r.issuer_code = code OR r.receiver_code = code $$;
CREATE OR REPLACE FUNCTION core.find_documents_by_new_agency(code text, as_of date DEFAULT current_date)
    RETURNS SETOF core.documents LANGUAGE sql STABLE AS $$
    SELECT * FROM ({as_of_rows()}) r
    WHERE r.issuer_new_agency_code = code OR r.receiver_new_agency_code = code $$;
-- The agency crosswalk as published to the platform (one version per content), and the re-maps of
-- the loaded documents to each version.
CREATE TABLE IF NOT EXISTS registry.agency_crosswalk_versions (
    version text PRIMARY KEY,
    files jsonb NOT NULL,
    n_rows integer NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry.agency_crosswalk (
    version text NOT NULL REFERENCES registry.agency_crosswalk_versions (version),
    old_agency_code text NOT NULL,
    old_agency_name text,
    new_agency_code text NOT NULL,
    new_agency_name text,
    valid_from date NOT NULL,
    valid_to date,
    note text,
    PRIMARY KEY (version, old_agency_code, valid_from)
);
CREATE TABLE IF NOT EXISTS registry.agency_remaps (
    version text PRIMARY KEY REFERENCES registry.agency_crosswalk_versions (version),
    run_id text,
    applied_at timestamptz NOT NULL DEFAULT now(),
    documents_changed integer NOT NULL,
    steps_changed integer NOT NULL,
    impact jsonb NOT NULL
);
"""


def grant_document_access(conn) -> None:  # noqa: ANN001 - psycopg connection of ensure_roles
    """Least privilege for the documents (called by :func:`sapnhap.platform.ensure_roles`).

    The analyst and the auditor read every column of ``core.documents`` / ``history.documents``
    but the summary (column privileges), and the masked views; :data:`DOCUMENT_READER_ROLE`
    (granted to cleared officials) reads the tables whole. The loader publishes the agency
    crosswalk and its re-maps (rows only).
    """
    from psycopg import sql

    from sapnhap.platform import ANALYST_ROLE, AUDITOR_ROLE, LOADER_ROLE

    readers = sql.SQL(", ").join(map(sql.Identifier, (ANALYST_ROLE, AUDITOR_ROLE)))
    cleared = sql.Identifier(DOCUMENT_READER_ROLE)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA core, history TO {}").format(cleared))
    for schema in ("core", "history"):
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.documents",)).fetchone()[0] is None:
            continue
        table = sql.Identifier(schema, "documents")
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'documents' "
            "ORDER BY ordinal_position", (schema,))]
        conn.execute(sql.SQL("REVOKE SELECT ON {} FROM {}").format(table, readers))
        conn.execute(sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns if c != "summary"), table, readers))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, cleared))
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.v_documents",)).fetchone()[0] is not None:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(schema, "v_documents"), cleared))
    for name in AGENCY_TABLES:
        if conn.execute("SELECT to_regclass(%s)", (f"registry.{name}",)).fetchone()[0] is not None:
            conn.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(sql.Identifier("registry", name),
                                                                    sql.Identifier(LOADER_ROLE)))


def mask_summary(summary: pd.Series, security_level: pd.Series) -> pd.Series:
    """The summaries a reader without clearance may see: a classified document's is replaced."""
    from sapnhap.quality.masking import mask_classified

    return mask_classified(summary, security_level, CLASSIFIED_SUMMARY_VI)


# ---------------------------------------------------------------------------------------------
# A new agency crosswalk: published, its impact on the loaded documents, the re-map


def publish_agencies(dsn: str, directory: Path | None = None) -> dict:
    """Publish the agency crosswalk in force (its version and rows) to ``registry``; idempotent."""
    import psycopg

    folder = str(directory or agencies_dir())
    contents = _crosswalk_files(folder)
    crosswalk, version = load_agencies(Path(folder))
    files = [{"name": f.name, "sha256": hashlib.sha256(data).hexdigest()} for f, data in contents]
    rows = crosswalk.assign(note=crosswalk["note"] if "note" in crosswalk else None)
    records = [
        (version, r.old_agency_code, r.old_agency_name or None, r.new_agency_code, r.new_agency_name or None,
         r.valid_from.date(), None if pd.isna(r.valid_to) else r.valid_to.date(), r.note or None)
        for r in rows.itertuples(index=False)
    ]
    with psycopg.connect(dsn) as conn:
        added = conn.execute(
            """INSERT INTO registry.agency_crosswalk_versions (version, files, n_rows) VALUES (%s, %s::jsonb, %s)
               ON CONFLICT (version) DO NOTHING""", (version, json.dumps(files, ensure_ascii=False), len(records))
        ).rowcount
        if added:
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO registry.agency_crosswalk (version, old_agency_code, old_agency_name, new_agency_code,
                       new_agency_name, valid_from, valid_to, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT DO NOTHING""", records)
    return {"version": version, "published": bool(added), "rows": len(records)}


def _agency_columns(ds: Dataset) -> list[str]:
    return [f"{prefix}_{suffix}" for _, _, prefix in ds.agency_roles
            for suffix in ("new_agency_code", "new_agency_name", "agency_status")]


def _loaded(conn, ds: Dataset) -> pd.DataFrame:  # noqa: ANN001
    inputs = sorted({c for code, dates, _ in ds.agency_roles for c in (code, *dates)})
    cols = [*ds.natural_key, *inputs, *_agency_columns(ds), "agency_crosswalk_version"]
    cur = conn.execute(f"SELECT {', '.join(cols)} FROM core.{ds.name}")  # noqa: S608 - names from the code
    return pd.DataFrame(cur.fetchall(), columns=cols, dtype=object)


def _remapped(conn, ds: Dataset, crosswalk: pd.DataFrame, version: str) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: ANN001
    """(rows as loaded, rows as the crosswalk ``version`` maps them), same order."""
    before = _loaded(conn, ds)
    after = derive_agency_columns(before.copy(), ds, crosswalk=crosswalk, version=version)
    return before, after


def agency_impact(dsn: str, directory: Path | None = None) -> pd.DataFrame:
    """Dry run of the agency crosswalk in force on the loaded documents and steps: nothing is written.

    One row per (dataset, role, old agency, new agency before, after, status before, after) with
    ``n_records`` and ``changed`` (a different new agency or status; the rows only behind in
    version have ``changed`` false). ``attrs["version"]``: the crosswalk version compared.
    """
    import psycopg

    from sapnhap.datasets import DATASETS

    crosswalk, version = load_agencies(directory)
    parts = []
    with psycopg.connect(dsn) as conn:
        for name in ("documents", "document_steps"):
            ds = DATASETS[name]
            before, after = _remapped(conn, ds, crosswalk, version)
            for code_col, _, prefix in ds.agency_roles:
                code, status = f"{prefix}_new_agency_code", f"{prefix}_agency_status"
                frame = pd.DataFrame({
                    "dataset": name, "role": prefix, "old_agency_code": before[code_col],
                    "new_agency_before": before[code], "new_agency_after": after[code],
                    "status_before": before[status], "status_after": after[status],
                    "version_before": before["agency_crosswalk_version"],
                }).astype(object)
                frame = frame.where(frame.notna(), None)
                parts.append(frame)
    columns = ["dataset", "role", "old_agency_code", "new_agency_before", "new_agency_after", "status_before",
               "status_after", "n_records", "behind", "changed"]
    if not parts or not sum(len(p) for p in parts):
        out = pd.DataFrame(columns=columns)
    else:
        frame = pd.concat(parts, ignore_index=True)
        frame["behind"] = frame["version_before"] != version
        keys = columns[:7]
        out = (frame.fillna({"old_agency_code": "", "new_agency_before": "", "new_agency_after": "",
                             "status_before": "", "status_after": ""})
               .groupby(keys, dropna=False).agg(n_records=("dataset", "size"), behind=("behind", "sum")).reset_index())
        out["changed"] = (out["new_agency_before"] != out["new_agency_after"]) | (
            out["status_before"] != out["status_after"])
        out = out.sort_values(["changed", "n_records", "dataset", "role", "old_agency_code"],
                              ascending=[False, False, True, True, True]).reset_index(drop=True)
    out.attrs["version"] = version
    return out


def remap_loaded_documents(dsn: str, *, run_id: str | None = None, directory: Path | None = None) -> dict:
    """Re-map the loaded documents and steps to the agency crosswalk in force; once per version.

    Publishes the crosswalk (:func:`publish_agencies`); when ``registry.agency_remaps`` has no row
    for its version yet, every row of ``core.documents`` / ``core.document_steps`` mapped by
    another version gets the new agency columns and ``agency_crosswalk_version`` in one
    transaction (the previous version goes to history with the trigger; ``valid_from`` is the
    re-map's time, so a lookup as of an earlier date still sees what the platform showed then),
    and the version's re-map is recorded with its impact. Run by the nightly's prepare and by
    ``python -m sapnhap.agencies remap``; a second call for the same version changes nothing.
    """
    import psycopg
    from psycopg import sql

    from sapnhap.datasets import DATASETS

    published = publish_agencies(dsn, directory)
    version = published["version"]
    crosswalk, _ = load_agencies(directory)
    result = {"version": version, "applied": False, "documents": 0, "document_steps": 0}
    with psycopg.connect(dsn) as conn:
        # One re-map at a time (two schedulers' prepares); the second sees the first's row.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sapnhap.agency_remap'))")
        if conn.execute("SELECT 1 FROM registry.agency_remaps WHERE version = %s", (version,)).fetchone():
            return result
        impact = {}
        for name in ("documents", "document_steps"):
            ds = DATASETS[name]
            before, after = _remapped(conn, ds, crosswalk, version)
            agency_cols = _agency_columns(ds)
            behind = (before["agency_crosswalk_version"] != version).to_numpy(dtype=bool)
            changed = np.zeros(len(before), dtype=bool)
            for col in agency_cols:
                changed |= (before[col].fillna("").astype(str) != after[col].fillna("").astype(str)).to_numpy()
            impact[name] = {"rows": len(before), "behind": int(behind.sum()), "changed": int((behind & changed).sum())}
            todo = after[behind]
            if todo.empty:
                continue
            key = list(ds.natural_key)
            cols = [*key, *agency_cols, "agency_crosswalk_version"]
            stage = sql.Identifier(f"_remap_{name}")
            conn.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                stage, sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier("core", name)))
            with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    stage, sql.SQL(", ").join(map(sql.Identifier, cols)))) as copy:
                for row in todo[cols].astype(object).where(todo[cols].notna(), None).itertuples(index=False, name=None):
                    copy.write_row(row)
            updated = conn.execute(sql.SQL("UPDATE {t} AS t SET {sets}, valid_from = now() FROM {s} AS s WHERE {on}").format(
                t=sql.Identifier("core", name), s=stage,
                sets=sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(c)) for c in cols[len(key):]),
                on=sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key),
            )).rowcount
            result[name] = updated
        conn.execute(
            """INSERT INTO registry.agency_remaps (version, run_id, documents_changed, steps_changed, impact)
               VALUES (%s, %s, %s, %s, %s::jsonb)""",
            (version, run_id, impact["documents"]["changed"], impact["document_steps"]["changed"], json.dumps(impact)),
        )
    result["applied"] = True
    log.info("agency crosswalk %s: %d documents and %d steps re-mapped", version, result["documents"],
             result["document_steps"])
    return result
