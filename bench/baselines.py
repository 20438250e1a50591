"""What the benchmark compares sapnhap with, on the same generated legacy sources (``province.py``).

Each baseline syncs every source's two tables (``nhan_khau`` residents, ``ho_so`` dossiers) into
the platform server, once in full and once incrementally (rows whose cursor moved past the
largest value the full sync saw), on the same number of workers as sapnhap:

- **raw COPY**: ``COPY (SELECT ...) TO STDOUT`` on the legacy server streamed straight into
  ``COPY ... FROM STDIN`` on the platform (one table per dataset, no key, no index). The floor:
  nothing is converted, checked, kept or merged.
- **dlt** (a dev/bench dependency): one ``dlt`` pipeline per legacy system, the ``sql_database``
  source with the pyarrow backend, an incremental cursor on the same column sapnhap uses and
  ``write_disposition="merge"`` on the same primary key, into PostgreSQL (dlt's defaults
  otherwise). One dataset (schema) per legacy system: pipelines on two workers share no staging
  table.
- **naive**: pandas ``read_sql`` of the table (or of the rows past the cursor), a per-row Python
  conversion (NFC text, dates, crosswalk, a row hash), ``DataFrame.to_sql``; the incremental run
  deletes the changed keys and appends them again.

Jobs run on a spawn process pool (``run_pool``); each returns its rows and its worker's RSS
high-water mark (``ru_maxrss``).
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

# (legacy table, primary key, cursor, canonical dataset)
TABLES = (("nhan_khau", "id_nhan_khau", "thoi_diem_cap_nhat", "residents"),
          ("ho_so", "id", "ngay_cap_nhat", "dossiers"))


@dataclass
class MethodRun:
    """One sync (full or incremental) of one method over every source."""

    method: str
    label: str
    wall: float = 0.0
    rows_in: int = 0  # rows read from the legacy sources
    rows_out: int = 0  # rows the target holds afterwards (loaded; sapnhap: + quarantined + merged)
    worker_peak_rss: int = 0  # bytes, highest RSS high-water mark of one worker process
    notes: dict = field(default_factory=dict)


def _maxrss() -> int:
    """This process's RSS high-water mark (``VmHWM``: unlike ``ru_maxrss``, not inherited from the
    parent a spawned worker was forked from before its exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sqlalchemy_url(dsn: str, driver: str = "postgresql+psycopg2") -> str:
    """A SQLAlchemy URL for a libpq DSN (TCP or unix socket), with its ``options`` (search_path) kept."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    p = conninfo_to_dict(dsn)
    host = p.get("host") or ""
    query = {}
    if host.startswith("/"):
        query["host"] = host
        if p.get("port"):
            query["port"] = str(p["port"])
        host = None
    if p.get("options"):
        query["options"] = p["options"]
    url = URL.create(driver, username=p.get("user"), password=p.get("password"), host=host or None,
                     port=int(p["port"]) if p.get("port") and host else None, database=p.get("dbname"), query=query)
    return url.render_as_string(hide_password=False)


def run_pool(workers: int, fn, jobs: list[tuple]) -> tuple[list, float, int]:  # noqa: ANN001
    """Run ``fn(*job)`` for every job on ``workers`` warm spawn processes; (results, wall, peak RSS)."""
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_warm) as pool:
        list(pool.map(time.sleep, [0.3] * workers))  # started and warm before the clock runs
        t0 = time.perf_counter()
        results = list(pool.map(fn, *zip(*jobs, strict=True))) if jobs else []
        wall = time.perf_counter() - t0
    peak = max((r.get("maxrss", 0) for r in results), default=0)
    return results, wall, peak


def _warm() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import sqlalchemy  # noqa: F401


# --------------------------------------------------------------------------- raw COPY


def _raw_job(legacy_dsn: str, platform_dsn: str, schema: str, since: dict | None) -> dict:
    rows, cursors = 0, {}
    with psycopg.connect(legacy_dsn, autocommit=True) as src, psycopg.connect(platform_dsn) as dst:
        for table, _key, cursor, _ds in TABLES:
            where = sql.SQL("")
            if since is not None:
                where = sql.SQL(" WHERE {} > {}").format(sql.Identifier(cursor), sql.Literal(since[table]))
            query = sql.SQL("COPY (SELECT * FROM {}{}) TO STDOUT").format(sql.Identifier(table), where)
            with src.cursor().copy(query) as out, dst.cursor().copy(
                sql.SQL("COPY {}.{} FROM STDIN").format(sql.Identifier(schema), sql.Identifier(table))
            ) as into:
                for block in out:
                    into.write(block)
            n = src.execute(sql.SQL("SELECT count(*), max({c}) FROM {t}{w}").format(
                c=sql.Identifier(cursor), t=sql.Identifier(table), w=where)).fetchone()
            rows += n[0]
            cursors[table] = n[1] if n[1] is not None else (since or {}).get(table)
        dst.commit()
    return {"rows": rows, "cursors": cursors, "maxrss": _maxrss()}


def _raw_tables(platform_dsn: str, legacy_dsn: str, schema: str) -> None:
    """Fresh target tables in ``schema`` with the legacy tables' columns and types (no key, no index)."""
    with psycopg.connect(legacy_dsn) as src:
        ddl = {}
        for table, *_ in TABLES:
            cols = src.execute(
                "SELECT column_name, format_type(a.atttypid, a.atttypmod) FROM information_schema.columns c "
                "JOIN pg_attribute a ON a.attrelid = (c.table_schema || '.' || c.table_name)::regclass "
                "AND a.attname = c.column_name WHERE c.table_name = %s AND c.table_schema = current_schema() "
                "ORDER BY c.ordinal_position", (table,)).fetchall()
            ddl[table] = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in cols)
    with psycopg.connect(platform_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table, cols in ddl.items():
            conn.execute(sql.SQL("CREATE TABLE {}.{} ({})").format(sql.Identifier(schema), sql.Identifier(table), cols))


def raw_copy(legacy: dict[str, str], platform_dsn: str, workers: int, label: str, since: dict | None) -> MethodRun:
    """COPY every source's tables out and into the platform; ``since``: {source_id: {table: cursor}} (incremental)."""
    schema = f"raw_copy_{label}"
    _raw_tables(platform_dsn, next(iter(legacy.values())), schema)
    jobs = [(dsn, platform_dsn, schema, since[sid] if since is not None else None) for sid, dsn in legacy.items()]
    results, wall, peak = run_pool(workers, _raw_job, jobs)
    run = MethodRun("raw COPY", label, wall, sum(r["rows"] for r in results), 0, peak)
    with psycopg.connect(platform_dsn) as conn:
        run.rows_out = sum(conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(t))).fetchone()[0] for t, *_ in TABLES)
    run.notes["cursors"] = {sid: r["cursors"] for sid, r in zip(legacy, results, strict=True)}
    return run


# --------------------------------------------------------------------------- dlt


def _dlt_job(source_id: str, legacy_url: str, schema: str, dest: dict, pipelines_dir: str) -> dict:
    import dlt
    from dlt.sources.sql_database import sql_database

    source = sql_database(credentials=legacy_url, schema=schema, table_names=[t for t, *_ in TABLES],
                          backend="pyarrow")
    for table, key, cursor, _ds in TABLES:
        getattr(source, table).apply_hints(primary_key=key, write_disposition="merge",
                                           incremental=dlt.sources.incremental(cursor))
    pipeline = dlt.pipeline(pipeline_name=f"bench_{source_id}", destination=dlt.destinations.postgres(credentials=dest),
                            dataset_name=f"dlt_{source_id}", pipelines_dir=pipelines_dir, progress=None)
    pipeline.run(source)
    counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace.last_normalize_info else {}
    rows = sum(counts.get(t, 0) for t, *_ in TABLES)
    return {"rows": rows, "maxrss": _maxrss()}


def dlt_sync(legacy: dict[str, tuple[str, str]], platform_dsn: str, workers: int, label: str,
             pipelines_dir: str) -> MethodRun:
    """One dlt pipeline per source (``legacy``: {source_id: (dsn, schema)}); the second call is incremental."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(platform_dsn)
    # dlt insists on a password and a host name; a server that trusts the login never asks for the
    # password, and a unix-socket server (the embedded one) is reached through the query's host.
    host = params.get("host") or "localhost"
    dest = {"host": "localhost" if host.startswith("/") else host, "port": int(params.get("port") or 5432),
            "database": params.get("dbname"), "username": params.get("user"),
            "password": params.get("password") or "unused",
            # libpq: a host in the query overrides the URL's; a folder there is the unix socket's
            "query": {"host": host} if host.startswith("/") else {}}
    jobs = [(sid, sqlalchemy_url(dsn.split(" options=")[0]), schema, dest, pipelines_dir)
            for sid, (dsn, schema) in legacy.items()]
    results, wall, peak = run_pool(workers, _dlt_job, jobs)
    run = MethodRun("dlt", label, wall, sum(r["rows"] for r in results), 0, peak)
    with psycopg.connect(platform_dsn) as conn:
        for sid in legacy:
            for table, *_ in TABLES:
                run.rows_out += conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(f"dlt_{sid}"), sql.Identifier(table))).fetchone()[0]
    return run


# --------------------------------------------------------------------------- naive


def _naive_job(source_id: str, legacy_url: str, platform_url: str, since: dict | None) -> dict:
    """read_sql, per-row Python, to_sql: what a first pipeline written by hand looks like."""
    import hashlib
    import unicodedata

    import pandas as pd
    from sqlalchemy import create_engine, text

    from sapnhap.reference import load_reference

    targets = load_reference().old_commune_targets
    crosswalk = {r.old_commune_code: (r.new_commune_code, r.new_province_code) for r in targets.itertuples()}

    def txt(v: object) -> str | None:
        return None if v is None or (isinstance(v, float) and v != v) else unicodedata.normalize("NFC", str(v)).strip()

    def day(v: object):  # noqa: ANN202
        return None if v is None or v != v else dt.datetime.strptime(str(v)[:10], "%Y-%m-%d").date()

    mapping = {
        "nhan_khau": {"citizen_id": "so_dinh_danh", "full_name": "ho_ten", "birth_date": "ngay_sinh",
                      "gender": "gioi_tinh", "household_code": "ma_ho", "relation_to_head": "quan_he_chu_ho",
                      "old_commune_code": "ma_xa_thuong_tru", "address_detail": "dia_chi",
                      "registered_date": "ngay_dang_ky"},
        "ho_so": {"dossier_code": "ma_ho_so", "procedure_code": "ma_thu_tuc", "procedure_name": "ten_thu_tuc",
                  "applicant_name": "nguoi_nop", "applicant_citizen_id": "so_cccd", "old_commune_code": "ma_xa",
                  "address_detail": "dia_chi_chi_tiet", "received_date": "ngay_nhan", "due_date": "ngay_hen_tra",
                  "completed_date": "ngay_tra", "status": "trang_thai"},
    }
    dates = {"birth_date", "registered_date", "received_date", "due_date", "completed_date"}
    legacy, platform = create_engine(legacy_url), create_engine(platform_url)
    rows, cursors = 0, {}
    for table, key, cursor, dataset in TABLES:
        query = f"SELECT * FROM {table}" + (f" WHERE {cursor} > %(since)s" if since is not None else "")
        frame = pd.read_sql(query, legacy, params={"since": since[table]} if since is not None else None)
        out = []
        for _, r in frame.iterrows():
            rec = {canon: (day(r[col]) if canon in dates else txt(r[col])) for canon, col in mapping[table].items()}
            code = (rec["old_commune_code"] or "").zfill(5)
            new = crosswalk.get(code)
            rec.update(old_commune_code=code, new_commune_code=new[0] if new else None,
                       new_province_code=new[1] if new else None, updated_at=r[cursor],
                       source_id=source_id, source_key=str(r[key]))
            rec["record_hash"] = hashlib.sha1(repr(sorted(rec.items())).encode()).hexdigest()[:16]
            out.append(rec)
        target = pd.DataFrame(out)
        rows += len(frame)
        cursors[table] = frame[cursor].max() if len(frame) else (since or {}).get(table)
        if target.empty:
            continue
        if since is None:
            target.to_sql(dataset, platform, schema="naive", if_exists="append", index=False)
        else:
            stage = f"stage_{source_id}_{dataset}"
            with platform.begin() as conn:
                conn.execute(text(f'DROP TABLE IF EXISTS naive."{stage}"'))
                conn.execute(text(f'CREATE TABLE naive."{stage}" (LIKE naive.{dataset})'))
            target.to_sql(stage, platform, schema="naive", if_exists="append", index=False)
            with platform.begin() as conn:
                conn.execute(text(f'DELETE FROM naive.{dataset} t USING naive."{stage}" s '
                                  "WHERE t.source_id = s.source_id AND t.source_key = s.source_key"))
                conn.execute(text(f'INSERT INTO naive.{dataset} SELECT * FROM naive."{stage}"'))
                conn.execute(text(f'DROP TABLE naive."{stage}"'))
    legacy.dispose()
    platform.dispose()
    return {"rows": rows, "cursors": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in cursors.items()},
            "maxrss": _maxrss()}


NAIVE_TABLES = {
    "residents": "citizen_id text, full_name text, birth_date date, gender text, household_code text, "
                 "relation_to_head text, old_commune_code text, address_detail text, registered_date date",
    "dossiers": "dossier_code text, procedure_code text, procedure_name text, applicant_name text, "
                "applicant_citizen_id text, old_commune_code text, address_detail text, received_date date, "
                "due_date date, completed_date date, status text",
}


def naive_sync(legacy: dict[str, str], platform_dsn: str, workers: int, label: str, since: dict | None) -> MethodRun:
    """The naive pipeline over every source; ``since``: {source_id: {table: cursor}} from the full run."""
    if since is None:
        with psycopg.connect(platform_dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS naive CASCADE")
            conn.execute("CREATE SCHEMA naive")
            for dataset, columns in NAIVE_TABLES.items():
                conn.execute(f"CREATE TABLE naive.{dataset} ({columns}, new_commune_code text, new_province_code text, "
                             "updated_at timestamp, source_id text, source_key text, record_hash text)")
    platform_url = sqlalchemy_url(platform_dsn)
    jobs = [(sid, sqlalchemy_url(dsn), platform_url, since[sid] if since is not None else None)
            for sid, dsn in legacy.items()]
    results, wall, peak = run_pool(workers, _naive_job, jobs)
    run = MethodRun("naive (pandas to_sql)", label, wall, sum(r["rows"] for r in results), 0, peak)
    with psycopg.connect(platform_dsn) as conn:
        for _t, *_, dataset in TABLES:
            exists = conn.execute("SELECT to_regclass(%s)", (f"naive.{dataset}",)).fetchone()[0]
            if exists:
                run.rows_out += conn.execute(sql.SQL("SELECT count(*) FROM naive.{}").format(sql.Identifier(dataset))
                                             ).fetchone()[0]
    run.notes["cursors"] = {sid: r["cursors"] for sid, r in zip(legacy, results, strict=True)}
    return run
