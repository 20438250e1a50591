"""The demo world against real systems: PostgreSQL databases, a SQLite file, export files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from sapnhap.sources import DEFAULT_SOURCES_DIR, get_source
from sapnhap_dev.demo import World, generate_world, insert_rows, mutate_world
from sapnhap_dev.demo import generator as g
from sapnhap_dev.demo.accounts import ACCOUNT_SOURCE_IDS
from sapnhap_dev.demo.documents import DOCUMENT_DEFECTS, DOCUMENT_SOURCE_IDS
from sapnhap_dev.demo.estate import ESTATE_SOURCE_IDS, INDICATOR_DEFECTS, PAGE_DEFECTS

SIZE = 20


def _world(root: Path, pg_admin_dsn: str, seed: int = 20250701) -> World:
    return generate_world(root, seed=seed, size=SIZE, pg_dsn=pg_admin_dsn, db_prefix=f"demotest_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[World]:
    w = _world(tmp_path_factory.mktemp("world"), pg_admin_dsn)
    try:
        yield w
    finally:
        w.drop_databases()


@pytest.fixture
def fresh_world(tmp_path: Path, pg_admin_dsn: str) -> Iterator[World]:
    w = _world(tmp_path / "world", pg_admin_dsn)
    try:
        yield w
    finally:
        w.drop_databases()


def _read(world: World, source_id: str, dataset: str) -> pd.DataFrame:
    """Every row the legacy system holds now (for files: the latest row per key), with source_key."""
    source = get_source(source_id, DEFAULT_SOURCES_DIR)
    mapping = source.datasets[dataset]
    conn_id = source.conn_id
    if source.kind == "postgres":
        with psycopg.connect(world.connections[conn_id]) as conn:
            cur = conn.execute(f'SELECT * FROM "{mapping.table}"')
            frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description], dtype=object)
    elif source.kind == "sqlite":
        path = world.connections[conn_id].removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            frame = pd.read_sql_query(f'SELECT * FROM "{mapping.table}"', db, dtype=object)
    elif source.kind == "access":
        path = Path(json.loads(world.connections[conn_id])["extra"]["path"])
        lines = subprocess.run(["mdb-json", "-D", "%Y-%m-%d", "-T", "%Y-%m-%d %H:%M:%S", str(path), mapping.table],
                               capture_output=True, check=True).stdout
        frame = pd.DataFrame([json.loads(line) for line in lines.splitlines()], dtype=object)
    else:
        folder = Path(json.loads(world.connections[conn_id])["extra"]["path"])
        parts = []
        for f in sorted(folder.glob(mapping.file_pattern)):
            if f.suffix == ".xlsx":
                part = pd.read_excel(f, sheet_name=mapping.sheet, dtype=str)
            else:
                part = pd.read_csv(f, dtype=str, encoding=mapping.encoding, keep_default_na=False)
            # Windows-1258 writes tone marks as combining characters, headers included.
            part.columns = [unicodedata.normalize("NFC", c) for c in part.columns]
            part = part.map(lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
            parts.append(part.assign(_file=f.name))
        frame = pd.concat(parts, ignore_index=True)
        cursor = pd.to_datetime(frame[mapping.cursor], format=mapping.timestamp_format)
        frame = frame.assign(_cursor=cursor).sort_values("_cursor").drop_duplicates(mapping.primary_key, keep="last")
    key = frame[mapping.primary_key[0]].astype(str)
    for col in mapping.primary_key[1:]:
        key = key + "|" + frame[col].astype(str)
    return frame.assign(source_key=key.to_numpy()).reset_index(drop=True)


def _cursor(frame: pd.DataFrame, mapping) -> pd.Series:  # noqa: ANN001 - DatasetMapping
    values = frame[mapping.cursor]
    text = isinstance(values.dropna().iloc[0], str)
    return pd.to_datetime(values, format=mapping.timestamp_format if text else None)


def test_connections_point_at_the_legacy_systems(world: World) -> None:
    assert set(world.connections) == {f"legacy_{s}" for s in (*g.SOURCE_IDS, *ACCOUNT_SOURCE_IDS, *DOCUMENT_SOURCE_IDS,
                                                              *ESTATE_SOURCE_IDS)} | {
        f"legacy_{s}_tep" for s in DOCUMENT_SOURCE_IDS}  # the folders of the documents' attached files
    for source_id in ("hg_vixuyen_motcua", "tq_sonduong_dancu"):
        uri = world.connections[f"legacy_{source_id}"]
        assert uri.startswith("postgresql://")
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (f"{world.db_prefix}_{source_id}",)
    assert world.connections["legacy_hg_bacquang_sqlite"].startswith("sqlite:////")
    assert Path(world.connections["legacy_hg_bacquang_sqlite"].removeprefix("sqlite:///")).is_file()
    fs = json.loads(world.connections["legacy_tq_yenson_xa_exports"])
    assert fs["conn_type"] == "fs" and Path(fs["extra"]["path"]).is_dir()


def test_rows_in_each_legacy_system_equal_the_ledger(world: World) -> None:
    ledger = world.ledger
    for (source_id, dataset), expected in ledger.groupby(["source_id", "dataset"]):
        held = _read(world, source_id, dataset)
        assert len(held) == len(expected), (source_id, dataset)
        assert sorted(held["source_key"]) == sorted(expected["source_key"]), (source_id, dataset)
    assert ledger.groupby(["source_id", "dataset"])["source_key"].apply(lambda k: k.is_unique).all()


def test_every_defect_kind_is_in_the_ledger_and_counted(world: World) -> None:
    defects = sorted(set(g.DEFECTS) | set(DOCUMENT_DEFECTS) | set(INDICATOR_DEFECTS) | set(PAGE_DEFECTS))
    assert set(world.ledger["defect"].dropna()) == set(defects)
    counts = world.counts()
    assert counts["rows"].sum() == len(world.ledger)
    assert (counts[[*defects, "clean"]].sum(axis=1) == counts["rows"]).all()
    assert set(counts["source_id"]) == set(g.SOURCE_IDS) | set(ACCOUNT_SOURCE_IDS) | set(DOCUMENT_SOURCE_IDS) | set(
        ESTATE_SOURCE_IDS)


def test_same_seed_same_ledger(world: World, tmp_path: Path, pg_admin_dsn: str) -> None:
    again = _world(tmp_path / "again", pg_admin_dsn)
    try:
        cols = [c for c in g.LEDGER_COLUMNS if c != "location"] + ["location"]
        pd.testing.assert_frame_equal(world.ledger[cols], again.ledger[cols])
    finally:
        again.drop_databases()


def test_split_commune_records_sit_in_the_legacy_systems(world: World) -> None:
    held = _read(world, "hg_vixuyen_motcua", "dossiers").set_index("source_key")
    split = world.ledger[(world.ledger["source_id"] == "hg_vixuyen_motcua") & world.ledger["defect"].str.startswith("split", na=False)]
    assert {"split_with_rule", "split_no_rule"} <= set(split["defect"])
    rows = held.loc[split["source_key"]]
    assert (rows["ma_xa"] == "00967").all()  # Xã Việt Lâm, split into Vị Xuyên and Việt Lâm
    with_rule = split["defect"].to_numpy() == "split_with_rule"
    assert rows["dia_chi_chi_tiet"][with_rule].str.contains("(?i)thôn").all()
    ys = world.ledger[(world.ledger["source_id"] == "tq_yenson_xa_exports") & (world.ledger["defect"] == "split_no_rule")]
    assert (ys["old_commune_code"] == "02494").all() and len(ys) >= 1


def test_legacy_formats_are_as_declared(world: World) -> None:
    folder = world.export_dir()
    households = next(folder.glob("ho_gia_dinh_*.csv")).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        households.decode("utf-8")
    residents = {f.name: f.read_bytes() for f in folder.glob("nhan_khau_*.csv")}
    assert any(raw.startswith(b"\xef\xbb\xbf") for raw in residents.values())
    decoded = [raw.decode("utf-8-sig") for raw in residents.values()]
    assert any(text != unicodedata.normalize("NFC", text) for text in decoded)  # decomposed Unicode
    assert list(folder.glob("ho_so_*.xlsx"))
    vx = _read(world, "hg_vixuyen_motcua", "dossiers")
    bad = world.ledger[(world.ledger["source_id"] == "hg_vixuyen_motcua") & (world.ledger["defect"] == "bad_date")]
    values = set(vx.set_index("source_key").loc[bad["source_key"], "ngay_nhan"])
    assert values & {"31/02/2024", "2024-13-01", "", "abc", "01/13/2024"}
    assert pd.to_datetime(vx["ngay_cap_nhat"]).max() < pd.Timestamp(g.CLOCK_START)


def test_mutate_world_changes_what_it_says(fresh_world: World) -> None:
    w = fresh_world
    before = {key: _read(w, *key) for key in w.ledger.groupby(["source_id", "dataset"]).groups}
    n_ledger = len(w.ledger)
    changes = mutate_world(w, fraction=0.1, seed=3)

    assert set(changes["source_id"]) == set(g.SOURCE_IDS)
    inserts = changes[changes["change"] == "insert"]
    assert len(w.ledger) == n_ledger + len(inserts)
    # New records of a still-running legacy system carry old codes after the merger (steps have no unit).
    assert (inserts.loc[inserts["dataset"] != "dossier_steps", "defect"] == "old_code_after_merger").all()
    assert inserts.loc[inserts["dataset"] == "dossier_steps", "defect"].isna().all()
    for (source_id, dataset), old in before.items():
        mapping = get_source(source_id, DEFAULT_SOURCES_DIR).datasets[dataset]
        now = _read(w, source_id, dataset).set_index("source_key")
        mine = changes[(changes["source_id"] == source_id) & (changes["dataset"] == dataset)]
        assert sorted(now.index) == sorted(w.ledger.loc[(w.ledger["source_id"] == source_id) & (w.ledger["dataset"] == dataset), "source_key"])
        assert set(mine.loc[mine["change"] == "insert", "source_key"]).isdisjoint(old["source_key"])
        old_cursor, cursor = _cursor(old, mapping), _cursor(now, mapping)
        changed = cursor.index.isin(mine["source_key"])
        assert changed.sum() == len(mine), (source_id, dataset)
        # Changed rows, and only they, moved past every cursor value of the night before.
        assert (cursor[changed] > old_cursor.max()).all(), (source_id, dataset)
        assert (cursor[~changed] <= old_cursor.max()).all(), (source_id, dataset)
    new_files = [f.name for f in w.export_dir().iterdir() if "capnhat" in f.name]
    assert sorted(new_files) == sorted(
        ["ho_gia_dinh_capnhat_20251201.csv", "nhan_khau_capnhat_20251201.csv", "ho_so_capnhat_20251201.xlsx"]
    )


def test_insert_rows_adds_exactly_n(fresh_world: World) -> None:
    w = fresh_world
    for source_id, dataset in (("tq_sonduong_dancu", "residents"), ("hg_bacquang_sqlite", "dossiers"),
                               ("tq_yenson_xa_exports", "dossiers")):
        before = set(_read(w, source_id, dataset)["source_key"])
        added = insert_rows(w, source_id, dataset, 5)
        after = set(_read(w, source_id, dataset)["source_key"])
        assert len(added) == 5
        assert after - before == set(added["source_key"])
