"""Demo document systems (văn bản đến/đi) of the four former districts of the demo world.

Legacy systems described by ``include/sources/<source_id>.yaml``, one per old district:

- ``hg_vixuyen_qlvb``     PostgreSQL, document management of the Vị Xuyên district (Hà Giang),
  UTF-8, timestamps typed
- ``hg_bacquang_vanban``  PostgreSQL, another vendor's document management of the Bắc Quang
  district (Hà Giang): ISO date text, coded register, security level and status
- ``tq_sonduong_vanban``  SQLite file of an old desktop register of the Sơn Dương district
  (Tuyên Quang), its Vietnamese text in TCVN3 (ABC) bytes shown as Latin text
- ``tq_yenson_vanban``    an Access (.mdb) file of the Yên Sơn district office's register
  (Tuyên Quang): Vietnamese table and column names with spaces, Date/Time update times

Each holds incoming and outgoing documents with their processing history, and a folder of the
attached files. Issuing, receiving and processing units are old agency codes taken from the
province's agency crosswalk (``include/sapnhap/reference/agencies/``), so the world and the
crosswalk cannot drift apart. Defects are counted in the ledger like the generator's.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

DOCUMENT_SOURCE_IDS = ("hg_vixuyen_qlvb", "hg_bacquang_vanban", "tq_sonduong_vanban", "tq_yenson_vanban")
# Old province, old district, and the prefix of the system's document codes.
_SYSTEMS = {"hg_vixuyen_qlvb": ("02", "030", "QLVB.030."), "hg_bacquang_vanban": ("02", "034", "BQ034/"),
            "tq_sonduong_vanban": ("08", "076", "VB076-"), "tq_yenson_vanban": ("08", "075", "YS075-")}
# An office the province's crosswalk does not list (a document of it waits for the province).
_UNLISTED_OFFICE = {source_id: f"{province}.{district}.PVHTT" for source_id, (province, district, _) in _SYSTEMS.items()}
DOCUMENT_DEFECTS = ("duplicate_number", "received_before_issued", "unknown_agency", "attachment_missing", "bad_date")
_TYPES = (("Quyết định", "QĐ"), ("Công văn", "CV"), ("Báo cáo", "BC"), ("Kế hoạch", "KH"), ("Thông báo", "TB"),
          ("Tờ trình", "TTr"))
_SUBJECTS = ("giao chỉ tiêu kế hoạch năm", "kiểm tra công tác cải cách hành chính", "tổ chức hội nghị tổng kết",
             "phân bổ kinh phí sự nghiệp", "bàn giao hồ sơ lưu trữ khi sắp xếp đơn vị hành chính",
             "phòng chống thiên tai mùa mưa lũ", "xét duyệt hộ nghèo, cận nghèo", "quản lý đất đai trên địa bàn")
_ACTIONS_IN = ("Tiếp nhận, vào sổ", "Chuyển lãnh đạo cho ý kiến", "Chuyển xử lý", "Xử lý xong", "Lưu hồ sơ")
_ACTIONS_OUT = ("Soạn thảo", "Trình ký", "Ký ban hành", "Phát hành", "Lưu hồ sơ")
_STATUS = ("completed", "processing", "registered", "archived")


@dataclass
class DocumentSystems:
    """What was written: the ledger rows, the canonical frames (truth) and where the files are."""

    ledger: pd.DataFrame
    documents: pd.DataFrame  # canonical rows with source_id and internal _ columns
    steps: pd.DataFrame
    attachment_dirs: dict[str, Path] = field(default_factory=dict)  # source_id -> folder
    # Every attachment file written (source_id, source_key, path, sha256): the demo accounts for them.
    attachments: pd.DataFrame = field(default_factory=pd.DataFrame)


def _agencies(province: str, district: str) -> dict[str, pd.DataFrame]:
    from sapnhap.documents import load_agencies

    crosswalk, _ = load_agencies()
    names = crosswalk.drop_duplicates("old_agency_code").set_index("old_agency_code")["old_agency_name"]
    codes = pd.Series(names.index, dtype=object)
    own = codes[codes.str.startswith(f"{province}.{district}.") & ~codes.str.fullmatch(rf"{province}\.\d{{5}}\.UBND")]
    communes = codes[codes.str.fullmatch(rf"{province}\.\d{{5}}\.UBND")]
    # Only this district's communes: their code's district is read from the registry.
    from sapnhap_dev.demo.generator import _units

    units = _units().communes
    mine = set(units.loc[units["district_code"] == district, "code"])
    communes = communes[communes.str.slice(3, 8).isin(mine)]
    province_level = codes[codes.str.fullmatch(rf"{province}\.[A-Z]+")]
    central = codes[~codes.str.contains(".", regex=False)]

    def frame(values: pd.Series) -> pd.DataFrame:
        return pd.DataFrame({"code": values.to_numpy(dtype=object), "name": names.loc[values].to_numpy(dtype=object)})

    return {"own": frame(own), "communes": frame(communes), "province": frame(province_level),
            "central": frame(central)}


def _pick(rng: np.random.Generator, table: pd.DataFrame, n: int) -> pd.DataFrame:
    return table.iloc[rng.integers(0, len(table), n)].reset_index(drop=True)


def _documents(source_id: str, rng: np.random.Generator, n: int, clock: datetime) -> pd.DataFrame:
    from sapnhap_dev.demo import names
    from sapnhap_dev.demo.generator import _dates, _plan, _stamp

    province, district, prefix = _SYSTEMS[source_id]
    ag = _agencies(province, district)
    outgoing = rng.random(n) < 0.5
    issued = _dates(rng, n, "2023-01-02", "2025-11-25")
    own = _pick(rng, ag["own"], n)
    # An outgoing document goes to a commune or a department; an incoming one comes from them or a ministry.
    others = pd.concat([ag["communes"], ag["province"], ag["central"]], ignore_index=True)
    other = _pick(rng, others, n)
    issuer = own.where(pd.Series(outgoing), other)
    receiver = other.where(pd.Series(outgoing), own)
    received = np.where(outgoing, np.datetime64("NaT"), issued + rng.integers(0, 6, n).astype("timedelta64[D]"))
    received = np.where(~np.isnat(received), np.minimum(received, np.datetime64(clock.date(), "D") - 1), received)
    kind = rng.integers(0, len(_TYPES), n)
    frame = pd.DataFrame({
        "_seq": np.arange(1, n + 1),
        "document_code": [f"{prefix}{i:06d}" for i in range(1, n + 1)],
        "direction": np.where(outgoing, "outgoing", "incoming").astype(object),
        "document_type": np.array([t[0] for t in _TYPES], dtype=object)[kind],
        "_abbrev": np.array([t[1] for t in _TYPES], dtype=object)[kind],
        "issuer_code": issuer["code"].to_numpy(dtype=object),
        "issuer_name": issuer["name"].to_numpy(dtype=object),
        "receiver_code": receiver["code"].to_numpy(dtype=object),
        "receiver_name": receiver["name"].to_numpy(dtype=object),
        "issued_date": issued,
        "received_date": received,
        "summary": ["Về việc " + _SUBJECTS[i] for i in rng.integers(0, len(_SUBJECTS), n)],
        "signer": [f"{names.FAMILY_NAMES[a]} {names.MIDDLE_MALE[b]} {names.GIVEN_MALE[c]}" for a, b, c in
                   zip(rng.integers(0, len(names.FAMILY_NAMES), n), rng.integers(0, len(names.MIDDLE_MALE), n),
                       rng.integers(0, len(names.GIVEN_MALE), n), strict=True)],
        "security_level": np.where(rng.random(n) < 0.9, "normal", "confidential").astype(object),
        "status": np.array(_STATUS, dtype=object)[rng.choice(len(_STATUS), n, p=[0.6, 0.2, 0.1, 0.1])],
    })
    # Numbers run per issuer and year, in date order: "<n>/<type>-<issuer>".
    frame = frame.sort_values(["issued_date", "_seq"], kind="stable")
    year = pd.to_datetime(frame["issued_date"]).dt.year
    number = frame.groupby([frame["issuer_code"], year]).cumcount() + 1
    issuer_abbrev = frame["issuer_code"].str.split(".").str[-1]
    frame["number_symbol"] = number.astype(str) + "/" + frame["_abbrev"] + "-" + issuer_abbrev
    frame = frame.sort_values("_seq").reset_index(drop=True)
    frame["_defect"] = _plan(rng, n, DOCUMENT_DEFECTS)
    frame["_detail"] = None
    frame["_related"] = None
    frame["_raw_issued_date"] = None
    tags = frame["_defect"].to_numpy(dtype=object)
    # Typed twice into the register: a second record with the number of an earlier clean one.
    dup = np.flatnonzero(tags == "duplicate_number")
    clean = np.flatnonzero(pd.isna(tags) & (frame["direction"] == "outgoing").to_numpy())
    originals = rng.choice(clean, len(dup), replace=False)
    for col in ("direction", "issuer_code", "issuer_name", "receiver_code", "receiver_name", "number_symbol",
                "issued_date", "document_type"):
        frame.loc[dup, col] = frame.loc[originals, col].to_numpy()
    frame.loc[dup, "received_date"] = pd.NaT
    frame.loc[dup, "_related"] = frame.loc[originals, "document_code"].to_numpy()
    # Both records fail the numbering check: neither is loaded until the register is corrected.
    frame.loc[originals, "_defect"] = "duplicate_number"
    frame.loc[originals, "_detail"] = "original"
    frame.loc[dup, "_detail"] = "copy"
    late = np.flatnonzero(tags == "received_before_issued")
    frame.loc[late, "direction"] = "incoming"
    frame.loc[late, "received_date"] = frame.loc[late, "issued_date"] - pd.to_timedelta(rng.integers(1, 20, len(late)), unit="D")
    unlisted = np.flatnonzero(tags == "unknown_agency")
    frame.loc[unlisted, "direction"] = "outgoing"
    frame.loc[unlisted, "issuer_code"] = _UNLISTED_OFFICE[source_id]
    frame.loc[unlisted, "issuer_name"] = "Phòng Văn hóa và Thông tin huyện"
    frame.loc[unlisted, "_detail"] = _UNLISTED_OFFICE[source_id]
    bad = np.flatnonzero(tags == "bad_date")
    frame.loc[bad, "_raw_issued_date"] = np.array(["31/02/2024", "abc", "2024-13-01"], dtype=object)[np.arange(len(bad)) % 3]
    frame.loc[bad, "_detail"] = frame.loc[bad, "_raw_issued_date"]
    # One or two files per document, most of the time.
    files = rng.choice([0, 1, 1, 2], n)
    frame["attachment_paths"] = [
        ";".join(f"{str(d)[:4]}/{code.replace('.', '_')}_{k + 1}.pdf" for k in range(f)) or None
        for code, d, f in zip(frame["document_code"], frame["issued_date"], files, strict=True)
    ]
    missing = np.flatnonzero(tags == "attachment_missing")
    frame.loc[missing, "attachment_paths"] = [f"thieu/{c.replace('.', '_')}_goc.pdf"
                                               for c in frame.loc[missing, "document_code"]]
    frame.loc[missing, "_detail"] = frame.loc[missing, "attachment_paths"]
    last = pd.to_datetime(frame["received_date"]).fillna(pd.to_datetime(frame["issued_date"])).to_numpy()
    frame["updated_at"] = _stamp(rng, last.astype("datetime64[D]") + rng.integers(1, 4, n).astype("timedelta64[D]"), clock)
    return frame


def _steps(documents: pd.DataFrame, rng: np.random.Generator, province: str, district: str,
           clock: datetime) -> pd.DataFrame:
    """The processing history of each document: 2-5 steps by offices of the district, in time order
    except a few steps entered with a clock set wrong."""
    from sapnhap_dev.demo import names
    from sapnhap_dev.demo.generator import DEFECT_RATE

    own = _agencies(province, district)["own"]
    docs = documents.drop_duplicates("document_code").reset_index(drop=True)
    n_steps = rng.integers(2, 6, len(docs))
    rows = np.repeat(np.arange(len(docs)), n_steps)
    step_no = np.arange(len(rows)) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps) + 1
    start = pd.to_datetime(docs["received_date"]).fillna(pd.to_datetime(docs["issued_date"])).fillna(
        pd.Timestamp("2024-06-03")).to_numpy().astype("datetime64[s]") + np.timedelta64(8 * 3600, "s")
    gaps = rng.integers(600, 30 * 3600, len(rows)).astype("timedelta64[s]")
    gaps[step_no == 1] = np.timedelta64(0, "s")
    cum = np.cumsum(gaps.astype(np.int64))
    offsets = cum - np.repeat(cum[np.cumsum(n_steps) - n_steps], n_steps)
    acted = np.minimum(np.repeat(start, n_steps) + offsets.astype("timedelta64[s]"),
                       np.datetime64(clock - timedelta(minutes=5), "s"))
    outgoing = docs["direction"].to_numpy(dtype=object)[rows] == "outgoing"
    actions = np.where(outgoing, np.array(_ACTIONS_OUT, dtype=object)[np.minimum(step_no - 1, 4)],
                       np.array(_ACTIONS_IN, dtype=object)[np.minimum(step_no - 1, 4)])
    unit = _pick(rng, own, len(rows))
    tags = np.full(len(rows), None, dtype=object)
    detail = np.full(len(rows), None, dtype=object)
    candidates = np.flatnonzero(step_no >= 2)
    k = min(len(candidates), max(1, round(DEFECT_RATE * len(docs))))
    chosen = rng.choice(candidates, k, replace=False)
    acted[chosen] = acted[chosen - 1] - rng.integers(3600, 48 * 3600, k).astype("timedelta64[s]")
    tags[chosen] = "steps_out_of_order"
    detail[chosen] = "acted_before_previous_step"
    handlers = np.array([f"{names.FAMILY_NAMES[i % len(names.FAMILY_NAMES)]} Thị {names.GIVEN_FEMALE[i % len(names.GIVEN_FEMALE)]}"
                         for i in range(12)], dtype=object)
    return pd.DataFrame({
        "_seq": np.arange(1, len(rows) + 1),
        "document_code": docs["document_code"].to_numpy(dtype=object)[rows],
        "step_no": step_no,
        "unit_code": unit["code"].to_numpy(dtype=object),
        "unit_name": unit["name"].to_numpy(dtype=object),
        "handler": handlers[rng.integers(0, len(handlers), len(rows))],
        "action": actions,
        "acted_at": acted,
        "updated_at": np.maximum(acted, np.repeat(start, n_steps)),
        "_defect": tags,
        "_detail": detail,
        "_related": None,
    })


def _legacy(source_id: str, dataset: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical rows -> the legacy table: its column names, value codes, date text."""
    from sapnhap_dev.demo.generator import _inverse_values, _source

    mapping = _source(source_id).datasets[dataset]
    out = {}
    for canonical, legacy in mapping.columns.items():
        values = frame[canonical]
        if canonical in ("issued_date", "received_date"):
            text = pd.to_datetime(values).dt.strftime(mapping.date_format)
            values = text.astype(object).where(text.notna(), None)
            raw = f"_raw_{canonical}"
            if raw in frame:
                values = frame[raw].where(frame[raw].notna(), values)
        elif canonical in ("acted_at", "updated_at") and source_id == "tq_sonduong_vanban":
            values = pd.to_datetime(values).dt.strftime(mapping.timestamp_format).astype(object)
        elif canonical in mapping.values:
            inverse = _inverse_values(mapping, canonical)
            values = values.map(lambda v, inv=inverse: inv.get(v, v))
        typed = pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_integer_dtype(values)
        out[legacy] = pd.Series(values.to_numpy() if typed else values.to_numpy(dtype=object),
                                dtype=None if typed else object)
    legacy = pd.DataFrame(out)
    if _source(source_id).datasets[dataset].encoding == "tcvn3":
        import sapnhap.codecs_vn  # noqa: F401 - registers the codec

        # The old tool stored TCVN3 bytes; a database driver shows them as Latin text.
        for col in legacy.columns:
            legacy[col] = pd.Series([v.encode("tcvn3").decode("latin-1") if isinstance(v, str) else v
                                     for v in legacy[col]], index=legacy.index, dtype=object)
    return legacy


def _write_attachments(folder: Path, documents: pd.DataFrame) -> list[dict]:
    """Write the files the documents name (not those of ``attachment_missing``); return what was written."""
    import hashlib

    written = []
    for code, paths, defect in zip(documents["document_code"], documents["attachment_paths"], documents["_defect"],
                                   strict=True):
        if not isinstance(paths, str) or defect == "attachment_missing":
            continue
        for rel in paths.split(";"):
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data = (f"%PDF-1.4\n% {code} {rel}\n".encode() + hashlib.sha256(f"{code}/{rel}".encode()).digest() * 16)
            path.write_bytes(data)
            written.append({"document_code": code, "path": rel, "sha256": hashlib.sha256(data).hexdigest()})
    return written


def _write_pg(uri: str, table: str, frame: pd.DataFrame, key: list[str], typed: dict[str, str]) -> None:
    import psycopg

    cols = ", ".join(f'"{c}" {typed.get(c, "TEXT")}' for c in frame.columns)
    pk = ", ".join(f'"{c}"' for c in key)
    with psycopg.connect(uri) as conn:
        conn.execute(f'CREATE TABLE "{table}" ({cols}, PRIMARY KEY ({pk}))')
        names_sql = ", ".join(f'"{c}"' for c in frame.columns)
        with conn.cursor() as cur, cur.copy(f'COPY "{table}" ({names_sql}) FROM STDIN') as copy:
            for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None):
                copy.write_row(row)


def _write_sqlite(path: Path, table: str, frame: pd.DataFrame, key: list[str]) -> None:
    with sqlite3.connect(path) as db:
        cols = ", ".join(f'"{c}" TEXT' for c in frame.columns)
        db.execute(f'CREATE TABLE "{table}" ({cols}, PRIMARY KEY ({", ".join(key)}))')
        marks = ", ".join("?" for _ in frame.columns)
        rows = [tuple(None if pd.isna(v) else str(v) for v in row)
                for row in frame.astype(object).itertuples(index=False, name=None)]
        db.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)


def _write_access(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    """An Access 2000 file of the tables: integers as Long Integer, timestamps as Date/Time, the rest Text."""
    from sapnhap_dev.demo.access_mdb import DATETIME, LONG, TEXT, Column, write_mdb

    content = {}
    for name, frame in tables.items():
        columns, values = [], {}
        for col in frame.columns:
            series = frame[col]
            if pd.api.types.is_datetime64_any_dtype(series):
                columns.append(Column(col, DATETIME))
                values[col] = [None if pd.isna(v) else pd.Timestamp(v).to_pydatetime() for v in series]
            elif pd.api.types.is_integer_dtype(series):
                columns.append(Column(col, LONG))
                values[col] = [int(v) for v in series]
            else:
                columns.append(Column(col, TEXT, 255))
                values[col] = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in series]
        rows = [{c.name: values[c.name][i] for c in columns} for i in range(len(frame))]
        content[name] = (columns, rows)
    path.unlink(missing_ok=True)
    write_mdb(path, content)


def generate_document_systems(world, seed: int, size: int) -> DocumentSystems:  # noqa: ANN001 - generator's World
    """Write the document systems of the demo world (one per old district); register their connections.

    Called by :func:`sapnhap_dev.demo.generator.generate_world`; adds connections and databases to
    ``world`` and returns what was written (the caller appends the ledger).
    """
    import psycopg

    from sapnhap_dev.demo.generator import CLOCK_START, LEDGER_COLUMNS, _db_uri, _source, _substream

    ledgers, all_docs, all_steps, files = [], [], [], []
    dirs: dict[str, Path] = {}
    for source_id in DOCUMENT_SOURCE_IDS:
        source = _source(source_id)
        province, district, _ = _SYSTEMS[source_id]
        rng = _substream(seed, "documents", source_id)
        folder = world.root / f"{source_id}_tep"
        if folder.exists():
            for f in sorted(folder.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
        folder.mkdir(parents=True, exist_ok=True)
        dirs[source_id] = folder
        world.connections[source.datasets["documents"].attachments] = json.dumps(
            {"conn_type": "fs", "extra": {"path": str(folder)}})
        n = max(20, round(0.75 * size))
        docs = _documents(source_id, rng, n, CLOCK_START)
        steps = _steps(docs, rng, province, district, CLOCK_START)
        written = _write_attachments(folder, docs)
        files += [{**w, "source_id": source_id} for w in written]
        doc_map, step_map = source.datasets["documents"], source.datasets["document_steps"]
        legacy_docs, legacy_steps = _legacy(source_id, "documents", docs), _legacy(source_id, "document_steps", steps)
        if source.kind == "postgres":
            db = f"{world.db_prefix}_{source_id}"
            world.databases[source_id] = db
            world.connections[source.conn_id] = _db_uri(world.pg_dsn, db)
            with psycopg.connect(world.pg_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{db}"')
            uri = world.connections[source.conn_id]
            _write_pg(uri, doc_map.table, legacy_docs, doc_map.primary_key, {doc_map.columns["updated_at"]: "TIMESTAMP"})
            _write_pg(uri, step_map.table, legacy_steps, step_map.primary_key,
                      {step_map.columns["step_no"]: "INTEGER", step_map.columns["acted_at"]: "TIMESTAMP",
                       step_map.columns["updated_at"]: "TIMESTAMP"})
        elif source.kind == "access":
            path = world.root / f"{source_id}.mdb"
            world.connections[source.conn_id] = json.dumps({"conn_type": "fs", "extra": {"path": str(path)}})
            _write_access(path, {doc_map.table: legacy_docs, step_map.table: legacy_steps})
        else:
            path = world.root / f"{source_id}.db"
            path.unlink(missing_ok=True)
            world.connections[source.conn_id] = f"sqlite:///{path}"
            _write_sqlite(path, doc_map.table, legacy_docs, doc_map.primary_key)
            _write_sqlite(path, step_map.table, legacy_steps, step_map.primary_key)
        for dataset, frame, table in (("documents", docs, doc_map.table), ("document_steps", steps, step_map.table)):
            key = frame["document_code"] if dataset == "documents" else frame["document_code"] + "|" + frame["step_no"].astype(str)
            ledgers.append(pd.DataFrame({
                "source_id": source_id, "dataset": dataset, "source_key": key.to_numpy(dtype=object),
                "natural_key": key.to_numpy(dtype=object), "defect": frame["_defect"].to_numpy(dtype=object),
                "detail": frame["_detail"].to_numpy(dtype=object), "old_commune_code": None,
                "expected_new_commune_code": None, "related_key": frame["_related"].to_numpy(dtype=object),
                "location": table,
            }, columns=LEDGER_COLUMNS).astype(object))
        all_docs.append(docs.assign(source_id=source_id))
        all_steps.append(steps.assign(source_id=source_id))
    return DocumentSystems(
        ledger=pd.concat(ledgers, ignore_index=True),
        documents=pd.concat(all_docs, ignore_index=True),
        steps=pd.concat(all_steps, ignore_index=True),
        attachment_dirs=dirs,
        attachments=pd.DataFrame(files, columns=["source_id", "document_code", "path", "sha256"]),
    )


__all__ = ["DOCUMENT_DEFECTS", "DOCUMENT_SOURCE_IDS", "DocumentSystems", "generate_document_systems"]
