"""The rest of the demo's legacy estate: reporting systems and portals of the old districts (R19, II.1).

Eight more legacy systems, each described by ``include/sources/<source_id>.yaml`` and synced by
the nightly like the others (extract, transform, validate, backup, load, reconcile, report,
handover):

- ``<district>_baocao``: each old district's reporting tool, exporting indicator values per old
  commune and quarter as ``chi_tieu_<period>_<date>.csv`` (Bắc Quang's tool writes VNI bytes).
  Ratios come with their numerator and denominator.
- ``<district>_congthongtin``: the district's commune portals, listing their pages and articles
  with their URLs as ``trang_<date>.csv``.

A few rows carry defects the checks must catch (an indicator outside the catalogue, a period
typed by hand, a negative count, a ratio that disagrees with its parts, a malformed URL, a page
dated before Vietnam had internet); the ledger tags them like the generator's. :func:`estate_night`
is a later night: a few values revised in a new export of their period, and new pages.

What the province publishes from them (indicators per new unit, the redirect map) is built from
the platform tables by the ``sapnhap_estate`` DAG (:mod:`sapnhap.indicators.publish`,
:mod:`sapnhap.portal`), never from these files.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

# Old district -> source prefix, portal host, the reporting tool's encoding.
DISTRICTS = {
    "030": ("hg_vixuyen", "vixuyen.hagiang.gov.vn", "utf-8"),
    "034": ("hg_bacquang", "bacquang.hagiang.gov.vn", "vni"),
    "075": ("tq_yenson", "yenson.tuyenquang.gov.vn", "utf-8"),
    "076": ("tq_sonduong", "sonduong.tuyenquang.gov.vn", "utf-8"),
}
REPORTING_SOURCE_IDS = tuple(f"{p}_baocao" for p, _, _ in DISTRICTS.values())
PORTAL_SOURCE_IDS = tuple(f"{p}_congthongtin" for p, _, _ in DISTRICTS.values())
ESTATE_SOURCE_IDS = REPORTING_SOURCE_IDS + PORTAL_SOURCE_IDS
PERIODS = {"2025-Q1": "10/04/2025", "2025-Q2": "10/07/2025"}  # period -> the day the tools reported it
WEIGHTED_SPLIT = "00967"  # Xã Việt Lâm: the province declared population shares (indicators/weights/)
UNWEIGHTED_SPLIT = "02494"  # Xã Thái Bình: no weights, its new communes read "cannot be allocated"
INDICATOR_COLUMNS = {"indicator_code": "Mã chỉ tiêu", "period": "Kỳ báo cáo", "old_commune_code": "Mã xã",
                     "value": "Giá trị", "numerator": "Tử số", "denominator": "Mẫu số",
                     "reported_date": "Ngày báo cáo", "updated_at": "Cập nhật lúc"}
PAGE_COLUMNS = {"url": "Đường dẫn", "title": "Tiêu đề", "kind": "Loại", "old_commune_code": "Mã xã",
                "published_date": "Ngày đăng", "summary": "Tóm tắt", "status": "Trạng thái",
                "updated_at": "Cập nhật lúc"}
_KINDS = {"page": "Trang", "article": "Tin bài"}
_STATUSES = {"published": "Hiển thị", "hidden": "Ẩn"}
_TOPICS = ("Lịch tiếp công dân", "Kết quả giải quyết thủ tục hành chính", "Thông báo tuyển dụng",
           "Kế hoạch phòng chống thiên tai", "Tin hoạt động của UBND xã", "Công khai ngân sách")
# One defect per district system, so every one shows up in its owners' report.
INDICATOR_DEFECTS = ("unknown_indicator", "bad_period", "negative_value", "ratio_mismatch")
PAGE_DEFECTS = ("malformed_url", "implausible_date")


@dataclass
class EstateSystems:
    """What was written: the ledger rows and the canonical rows as the systems hold them now."""

    ledger: pd.DataFrame
    values: pd.DataFrame  # canonical indicator values, with source_id, _defect, _file
    pages: pd.DataFrame  # canonical portal pages, with source_id, _defect, _file
    folders: dict[str, Path]


def _slug(name: str) -> str:
    from sapnhap_dev.demo.accounts import fold_ascii

    bare = name
    for prefix in ("Thị trấn ", "Xã ", "Phường "):
        bare = bare.removeprefix(prefix)
    return fold_ascii(bare).replace(" ", "").lower()


def _stamp(ts: datetime) -> str:
    return ts.strftime("%d/%m/%Y %H:%M:%S")


def _values(communes: pd.DataFrame, rng: np.random.Generator, clock: datetime) -> pd.DataFrame:
    """Every indicator of the catalogue for each commune and period, as the tools report them."""
    rows = []
    for period, reported in PERIODS.items():
        n = len(communes)
        population = rng.integers(2_000, 12_000, n)
        received = rng.integers(20, 120, n)
        on_time = np.minimum(received, (received * rng.uniform(0.7, 1.0, n)).astype(int))
        median_age = np.round(rng.uniform(24, 38, n), 1)
        stamp = _stamp(clock - timedelta(days=int(rng.integers(2, 60)), minutes=int(rng.integers(0, 600))))
        for i, code in enumerate(communes["code"]):
            base = {"period": period, "old_commune_code": code, "reported_date": reported, "updated_at": stamp,
                    "numerator": "", "denominator": ""}
            rows += [
                {**base, "indicator_code": "DS_TONG", "value": str(population[i])},
                {**base, "indicator_code": "HS_TIEP_NHAN", "value": str(received[i])},
                {**base, "indicator_code": "HS_DUNG_HAN", "value": str(on_time[i])},
                {**base, "indicator_code": "TL_DUNG_HAN", "value": f"{100 * on_time[i] / received[i]:.1f}",
                 "numerator": str(on_time[i]), "denominator": str(received[i])},
                {**base, "indicator_code": "TUOI_TRUNG_VI", "value": f"{median_age[i]:.1f}"},
            ]
    frame = pd.DataFrame(rows, columns=list(INDICATOR_COLUMNS))
    return frame.assign(_defect=None, _export=frame["period"])  # the export a row is in: one per period


def _indicator_defect(values: pd.DataFrame, defect: str, rng: np.random.Generator) -> pd.DataFrame:
    """Tag one clean row with ``defect``: the checks of ``indicator_values`` must quarantine it."""
    clean = values.index[values["_defect"].isna() & ~values["old_commune_code"].isin([WEIGHTED_SPLIT, UNWEIGHTED_SPLIT])]
    if defect == "ratio_mismatch":
        clean = clean[values.loc[clean, "indicator_code"] == "TL_DUNG_HAN"]
    elif defect == "negative_value":
        clean = clean[values.loc[clean, "indicator_code"] == "HS_TIEP_NHAN"]
    else:
        clean = clean[values.loc[clean, "indicator_code"] == "TUOI_TRUNG_VI"]
    i = clean[int(rng.integers(0, len(clean)))]
    if defect == "unknown_indicator":
        values.loc[i, "indicator_code"] = "TUOI_BQ"  # a local indicator the catalogue does not have
    elif defect == "bad_period":
        values.loc[i, "period"] = "Quý " + values.loc[i, "period"][-1] + "/2025"
    elif defect == "negative_value":
        values.loc[i, "value"] = "-" + values.loc[i, "value"]
    else:
        values.loc[i, "value"] = f"{float(values.loc[i, 'value']) + 12.5:.1f}"
    values.loc[i, "_defect"] = defect
    return values


def _pages(communes: pd.DataFrame, host: str, rng: np.random.Generator, clock: datetime) -> pd.DataFrame:
    rows = []
    for r in communes.itertuples(index=False):
        site = f"https://{_slug(r.name)}.{host}"
        for k in range(1 + int(rng.integers(1, 4))):
            published = np.datetime64("2019-01-01") + int(rng.integers(0, 2300))
            if k == 0:
                path, title, kind = "gioi-thieu", f"Giới thiệu {r.name}", "page"
            else:
                topic = _TOPICS[int(rng.integers(0, len(_TOPICS)))]
                path, title, kind = f"tin-tuc/{int(rng.integers(100, 999))}-{k}", f"{topic} ({r.name})", "article"
            rows.append({"url": f"{site}/{path}", "title": title, "kind": kind, "old_commune_code": r.code,
                         "published_date": pd.Timestamp(published).strftime("%d/%m/%Y"),
                         "summary": f"{title}.", "status": "hidden" if rng.random() < 0.05 else "published",
                         "updated_at": _stamp(clock - timedelta(days=int(rng.integers(2, 90))))})
    return pd.DataFrame(rows, columns=list(PAGE_COLUMNS)).drop_duplicates("url", ignore_index=True).assign(_defect=None)


def _page_defect(pages: pd.DataFrame, defect: str, rng: np.random.Generator) -> pd.DataFrame:
    clean = pages.index[pages["_defect"].isna() & (pages["kind"] == "article")]
    i = clean[int(rng.integers(0, len(clean)))]
    if defect == "malformed_url":
        pages.loc[i, "url"] = pages.loc[i, "url"].replace("https://", "https//", 1)
    else:
        pages.loc[i, "published_date"] = "01/01/1990"
    pages.loc[i, "_defect"] = defect
    return pages


def _write_csv(path: Path, frame: pd.DataFrame, columns: dict[str, str], encoding: str) -> None:
    """The tools' export: legacy headers, CRLF, the tool's encoding (VNI bytes for Bắc Quang's)."""
    import sapnhap.codecs_vn  # noqa: F401 - registers the VNI codec

    legacy = frame[list(columns)].rename(columns=columns)
    if "Loại" in legacy:
        legacy["Loại"] = legacy["Loại"].map(_KINDS)
        legacy["Trạng thái"] = legacy["Trạng thái"].map(_STATUSES)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(list(legacy.columns))
    writer.writerows(legacy.astype(str).itertuples(index=False, name=None))
    path.write_bytes(buf.getvalue().encode(encoding))


def _ledger(source_id: str, dataset: str, frame: pd.DataFrame, location: str) -> pd.DataFrame:
    from sapnhap_dev.demo.generator import LEDGER_COLUMNS

    if dataset == "indicator_values":
        key = frame["indicator_code"] + "|" + frame["period"] + "|" + frame["old_commune_code"]
    else:
        key = frame["url"]
    return pd.DataFrame({
        "source_id": source_id, "dataset": dataset, "source_key": key.to_numpy(dtype=object),
        "natural_key": key.to_numpy(dtype=object), "defect": frame["_defect"].to_numpy(dtype=object), "detail": None,
        "old_commune_code": frame["old_commune_code"].to_numpy(dtype=object), "expected_new_commune_code": None,
        "related_key": None, "location": location,
    }, columns=LEDGER_COLUMNS).astype(object)


def generate_estate_systems(world, seed: int) -> EstateSystems:  # noqa: ANN001 - generator's World
    """Write the reporting tools' exports and the portals' page lists; register their connections.

    Called by :func:`sapnhap_dev.demo.generator.generate_world` (the caller appends the ledger).
    """
    from sapnhap_dev.demo.generator import CLOCK_START, _source, _substream, _units

    communes = _units().communes
    ledgers, values, pages, folders = [], [], [], {}
    stamp = (CLOCK_START - timedelta(days=1)).strftime("%Y%m%d")
    for n, (district, (prefix, host, encoding)) in enumerate(DISTRICTS.items()):
        mine = communes[communes["district_code"] == district].reset_index(drop=True)
        for source_id in (f"{prefix}_baocao", f"{prefix}_congthongtin"):
            folder = world.root / source_id
            if folder.exists():
                for f in folder.iterdir():
                    f.unlink()
            folder.mkdir(parents=True, exist_ok=True)
            folders[source_id] = folder
            world.connections[_source(source_id).conn_id] = json.dumps({"conn_type": "fs", "extra": {"path": str(folder)}})
        rng = _substream(seed, "estate", prefix)
        frame = _indicator_defect(_values(mine, rng, CLOCK_START), INDICATOR_DEFECTS[n], rng)
        for period, part in frame.groupby("_export", sort=True):
            name = f"chi_tieu_{period}_{stamp}.csv"
            _write_csv(folders[f"{prefix}_baocao"] / name, part, INDICATOR_COLUMNS, encoding)
            ledgers.append(_ledger(f"{prefix}_baocao", "indicator_values", part, name))
            values.append(part.assign(source_id=f"{prefix}_baocao", _file=name))
        listed = _page_defect(_pages(mine, host, rng, CLOCK_START), PAGE_DEFECTS[n % len(PAGE_DEFECTS)], rng)
        name = f"trang_{stamp}.csv"
        _write_csv(folders[f"{prefix}_congthongtin"] / name, listed, PAGE_COLUMNS, "utf-8")
        ledgers.append(_ledger(f"{prefix}_congthongtin", "portal_pages", listed, name))
        pages.append(listed.assign(source_id=f"{prefix}_congthongtin", _file=name))
    return EstateSystems(pd.concat(ledgers, ignore_index=True), pd.concat(values, ignore_index=True),
                         pd.concat(pages, ignore_index=True), folders)


def estate_night(world, *, revised: int = 3, new_pages: int = 2) -> pd.DataFrame:  # noqa: ANN001 - World
    """A later night in the reporting tools and portals: in each district, ``revised`` clean
    additive values of 2025-Q2 corrected (a new export of the period, later cursor) and
    ``new_pages`` articles added (a new page list). Returns the changes (source_id, dataset,
    source_key, change, value) and appends the new records to the world's ledger.
    """
    from sapnhap_dev.demo.generator import _night, _substream, _units

    estate: EstateSystems = world.estate_systems
    cap, window, stamp = _night(world)
    when = _stamp(cap - timedelta(hours=2))
    communes = _units().communes
    changes, ledgers = [], []
    for district, (prefix, host, encoding) in DISTRICTS.items():
        rng = _substream(world.seed, "estate", prefix, "night", stamp)
        source_id = f"{prefix}_baocao"
        values = estate.values
        pick = values.index[(values["source_id"] == source_id) & values["_defect"].isna()
                            & (values["period"] == "2025-Q2") & (values["indicator_code"] == "DS_TONG")]
        rows = pick[np.sort(rng.choice(len(pick), min(revised, len(pick)), replace=False))]
        values.loc[rows, "value"] = [str(int(v) + int(rng.integers(1, 50))) for v in values.loc[rows, "value"]]
        values.loc[rows, "updated_at"] = when
        name = f"chi_tieu_2025-Q2_{stamp}.csv"
        _write_csv(estate.folders[source_id] / name, values.loc[rows], INDICATOR_COLUMNS, encoding)
        values.loc[rows, "_file"] = name
        keys = values.loc[rows, "indicator_code"] + "|" + values.loc[rows, "period"] + "|" + values.loc[rows, "old_commune_code"]
        changes.append(pd.DataFrame({"source_id": source_id, "dataset": "indicator_values", "source_key": keys.to_numpy(),
                                     "change": "update", "value": values.loc[rows, "value"].to_numpy()}))

        source_id = f"{prefix}_congthongtin"
        mine = communes[communes["district_code"] == district]
        chosen = mine.iloc[np.sort(rng.choice(len(mine), new_pages, replace=False))]
        added = pd.DataFrame([{
            "url": f"https://{_slug(r.name)}.{host}/tin-tuc/thong-bao-{stamp}-{k}", "title": f"Thông báo mới ({r.name})",
            "kind": "article", "old_commune_code": r.code, "published_date": (cap - timedelta(days=1)).strftime("%d/%m/%Y"),
            "summary": "Thông báo của UBND xã.", "status": "published", "updated_at": when,
        } for k, r in enumerate(chosen.itertuples(index=False))], columns=list(PAGE_COLUMNS)).assign(_defect=None)
        name = f"trang_{stamp}.csv"
        _write_csv(estate.folders[source_id] / name, added, PAGE_COLUMNS, "utf-8")
        estate.pages = pd.concat([estate.pages, added.assign(source_id=source_id, _file=name)], ignore_index=True)
        ledgers.append(_ledger(source_id, "portal_pages", added, name))
        changes.append(pd.DataFrame({"source_id": source_id, "dataset": "portal_pages", "source_key": added["url"].to_numpy(),
                                     "change": "insert", "value": None}))
    world.ledger = pd.concat([world.ledger, *ledgers], ignore_index=True)
    world.clock = max(world.clock, cap)
    return pd.concat(changes, ignore_index=True)


def published_estate(dsn: str, s3) -> dict:  # noqa: ANN001 - S3Config
    """What the ``sapnhap_estate`` DAG published last (the latest date under ``exports/``), for the
    demo's closing printout: old values in core, indicator outputs by status, old URLs redirected."""
    import psycopg

    from sapnhap import storage
    from sapnhap.indicators.publish import EXPORT_PREFIX as INDICATORS
    from sapnhap.portal import EXPORT_PREFIX as PORTAL

    def latest(prefix: str) -> list[str]:
        keys = storage.list_keys(s3, prefix + "/")
        if not keys:
            raise FileNotFoundError(f"nothing published under {prefix}/")
        day = max(k.split("/")[2] for k in keys)
        return sorted(k for k in keys if k.split("/")[2] == day)

    outputs = pd.concat([pd.read_csv(io.BytesIO(storage.get_bytes(s3, k)), dtype=str)
                         for k in latest(INDICATORS) if k.endswith(".csv")], ignore_index=True)
    (redirects,) = [k for k in latest(PORTAL) if k.endswith("redirects.csv")]
    with psycopg.connect(dsn) as conn:
        values = conn.execute("SELECT count(*) FROM core.indicator_values").fetchone()[0]
    return {"values": int(values), "outputs": int(len(outputs)),
            "status": {k: int(v) for k, v in outputs["status"].value_counts().sort_index().items()},
            "old_urls": int(len(pd.read_csv(io.BytesIO(storage.get_bytes(s3, redirects)), dtype=str))),
            "prefixes": f"{latest(INDICATORS)[0].rsplit('/', 1)[0]}/ and {redirects.rsplit('/', 1)[0]}/"}


__all__ = ["ESTATE_SOURCE_IDS", "EstateSystems", "PORTAL_SOURCE_IDS", "REPORTING_SOURCE_IDS", "UNWEIGHTED_SPLIT",
           "WEIGHTED_SPLIT", "estate_night", "generate_estate_systems", "published_estate"]
