"""The demo's reporting tools and portals write what their source files declare (R19, II.1)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from sapnhap.indicators import load_catalogue, reaggregate
from sapnhap.indicators.publish import load_province_weights
from sapnhap.reference import load_reference
from sapnhap.sources import get_source
from sapnhap_dev.demo.estate import (
    ESTATE_SOURCE_IDS,
    INDICATOR_DEFECTS,
    PAGE_DEFECTS,
    UNWEIGHTED_SPLIT,
    WEIGHTED_SPLIT,
    estate_night,
    generate_estate_systems,
)
from sapnhap_dev.demo.generator import CLOCK_START


def _world(root: Path) -> SimpleNamespace:
    world = SimpleNamespace(root=root, connections={}, seed=3, ledger=pd.DataFrame(), _nights=0, clock=CLOCK_START)
    world.estate_systems = generate_estate_systems(world, world.seed)
    world.ledger = world.estate_systems.ledger
    return world


def _read(world: SimpleNamespace, source_id: str) -> pd.DataFrame:
    """Every file of the system, read as its source file declares it (encoding, columns), newest row per key."""
    import sapnhap.codecs_vn  # noqa: F401 - the VNI codec

    source = get_source(source_id)
    ((_, mapping),) = source.datasets.items()
    folder = Path(json.loads(world.connections[source.conn_id])["extra"]["path"])
    parts = [pd.read_csv(f, dtype=str, encoding=mapping.encoding, keep_default_na=False).assign(_file=f.name)
             for f in sorted(folder.glob(mapping.file_pattern))]
    frame = pd.concat(parts, ignore_index=True)
    frame.columns = [unicodedata.normalize("NFC", c) for c in frame.columns]
    frame = frame.map(lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
    cursor = pd.to_datetime(frame[mapping.cursor], format=mapping.timestamp_format)
    frame = frame.assign(_cursor=cursor).sort_values("_cursor", kind="stable").drop_duplicates(mapping.primary_key, keep="last")
    assert set(mapping.columns.values()) <= set(frame.columns)
    frame = frame.rename(columns={v: k for k, v in mapping.columns.items()})
    keys = [next(k for k, v in mapping.columns.items() if v == pk) for pk in mapping.primary_key]
    return frame.assign(source_key=frame[keys].astype(str).agg("|".join, axis=1)).reset_index(drop=True)


def test_each_system_writes_what_its_source_file_declares_with_one_defect_each(tmp_path: Path) -> None:
    world = _world(tmp_path)
    assert set(world.ledger["source_id"]) == set(ESTATE_SOURCE_IDS)
    for source_id in ESTATE_SOURCE_IDS:
        rows = _read(world, source_id)
        ledger = world.ledger[world.ledger["source_id"] == source_id]
        # The ledger lists exactly the records the system holds, by the key the sync reads.
        assert sorted(rows["source_key"]) == sorted(ledger["source_key"]) and ledger["source_key"].is_unique
        assert ledger["defect"].notna().sum() == 1
    assert set(world.ledger["defect"].dropna()) == set(INDICATOR_DEFECTS) | set(PAGE_DEFECTS)
    # Bắc Quang's tool writes VNI bytes: not UTF-8, Vietnamese once read with the declared codec.
    (bq,) = [f for f in (tmp_path / "hg_bacquang_baocao").iterdir() if "Q1" in f.name]
    raw = bq.read_bytes()
    assert "Mã chỉ tiêu".encode() not in raw and raw.decode("vni").startswith("Mã chỉ tiêu")
    # Every value of every catalogued indicator, per old commune and period; ratios with their parts.
    values = _read(world, "hg_vixuyen_baocao")
    ratio = values[values["indicator_code"] == "TL_DUNG_HAN"]
    assert (ratio["numerator"] != "").all() and (ratio["denominator"] != "").all()
    assert set(values["indicator_code"]) - {"TUOI_BQ"} == set(load_catalogue())
    pages = _read(world, "tq_yenson_congthongtin")
    assert UNWEIGHTED_SPLIT in set(pages["old_commune_code"]) and set(pages["kind"]) == {"Trang", "Tin bài"}


def test_the_weights_the_province_declares_allocate_one_split_commune_and_not_the_other(tmp_path: Path) -> None:
    world = _world(tmp_path)
    values = world.estate_systems.values
    clean = values[values["_defect"].isna()]
    result = reaggregate(clean, load_reference(), load_catalogue(), load_province_weights())
    pop = result[(result["indicator_code"] == "DS_TONG") & (result["level"] == "commune") & (result["period"] == "2025-Q2")]
    assert (pop.loc[pop["composition"].str.contains(WEIGHTED_SPLIT), "status"] == "ok").sum() == 2
    assert (pop.loc[pop["composition"].str.contains(UNWEIGHTED_SPLIT), "status"] == "cannot_allocate").sum() == 2


def test_a_later_night_revises_values_in_a_new_export_and_adds_pages(tmp_path: Path) -> None:
    world = _world(tmp_path)
    before = {s: _read(world, s) for s in ESTATE_SOURCE_IDS}
    ledger_before = len(world.ledger)
    changes = estate_night(world, revised=3, new_pages=2)
    for source_id in ESTATE_SOURCE_IDS:
        mine = changes[changes["source_id"] == source_id]
        after = _read(world, source_id)
        files = sorted(p.name for p in (tmp_path / source_id).iterdir())
        assert len(files) == len(set(before[source_id]["_file"])) + 1  # one new export, the old ones kept
        if source_id.endswith("_baocao"):
            assert (mine["change"] == "update").all() and len(mine) == 3
            now = after.set_index("source_key").loc[mine["source_key"], "value"]
            was = before[source_id].set_index("source_key").loc[mine["source_key"], "value"]
            assert (now.astype(int) > was.astype(int)).all() and list(now) == list(mine["value"])
            assert len(after) == len(before[source_id])
        else:
            assert (mine["change"] == "insert").all() and len(mine) == 2
            assert set(after["source_key"]) == set(before[source_id]["source_key"]) | set(mine["source_key"])
    assert len(world.ledger) == ledger_before + (changes["change"] == "insert").sum()
