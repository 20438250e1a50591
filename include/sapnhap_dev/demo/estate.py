"""The rest of the demo's legacy estate: reporting systems and portals of the old districts (R19, II.1).

- **Reporting systems** (one per old district of the world): indicator values per old commune and
  quarter, exported by each district's tool as ``bao_cao/<district>/chi_tieu_<period>.csv``
  (legacy column names; Bắc Quang's tool writes VNI bytes). The province declares allocation
  weights for one split commune (Việt Lâm) and not for another (Thái Bình): the first is
  allocated, the second is reported "cannot be allocated".
- **Portals** (one per old district): the pages and articles of the old commune portals with their
  URLs, ``cong_thong_tin/<district>/trang.csv``.

:func:`produce_estate_outputs` turns them into what the province publishes, with the libraries
``sapnhap.indicators`` and ``sapnhap.portal``: indicators per new commune and province for each
period (CSV + JSON, composition on every value) and the portal redirect map (nginx map + CSV),
checked so every old URL reaches exactly one live URL. ``make demo`` runs it after the nightly and
stores the outputs in the bucket under ``exports/``.
"""

from __future__ import annotations

import csv
import io
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

# Old districts of the demo world, their portal host and the encoding of their reporting tool.
DISTRICTS = {
    "030": ("vixuyen.hagiang.gov.vn", "utf-8"),
    "034": ("bacquang.hagiang.gov.vn", "vni"),
    "075": ("yenson.tuyenquang.gov.vn", "utf-8"),
    "076": ("sonduong.tuyenquang.gov.vn", "utf-8"),
}
PERIODS = ("2025-Q1", "2025-Q2")
# Legacy column names of the district reporting tools -> the library's value columns.
LEGACY_COLUMNS = {"Mã chỉ tiêu": "indicator_code", "Kỳ báo cáo": "period", "Mã xã": "old_commune_code",
                  "Giá trị": "value"}
WEIGHTED_SPLIT = "00967"  # Xã Việt Lâm: the province declared population shares
PORTAL_VALID_FROM = date(2025, 7, 1)
PORTAL_DAYS = 365


@dataclass
class EstateFiles:
    """Where the generated legacy exports are."""

    root: Path
    indicator_files: list[Path]
    weights: Path
    portal_files: list[Path]


def _slug(name: str) -> str:
    from sapnhap_dev.demo.accounts import fold_ascii

    bare = name
    for prefix in ("Thị trấn ", "Xã ", "Phường "):
        bare = bare.removeprefix(prefix)
    return fold_ascii(bare).replace(" ", "").lower()


def generate_estate(root: Path, *, seed: int, size: int) -> EstateFiles:
    """Write the reporting exports, the weights file and the portal page lists under ``root``."""
    import sapnhap.codecs_vn  # noqa: F401 - registers the VNI codec
    from sapnhap_dev.demo.generator import _substream, _units

    root = Path(root)
    communes = _units().communes
    rng = _substream(seed, "estate")
    indicator_files, portal_files = [], []
    for district, (host, encoding) in DISTRICTS.items():
        mine = communes[communes["district_code"] == district].reset_index(drop=True)
        folder = root / "bao_cao" / district
        folder.mkdir(parents=True, exist_ok=True)
        for period in PERIODS:
            n = len(mine)
            population = rng.integers(2_000, 12_000, n)
            received = rng.integers(20, 40 + size, n)
            on_time = np.minimum(received, (received * rng.uniform(0.7, 1.0, n)).astype(int))
            median_age = np.round(rng.uniform(24, 38, n), 1)
            rows = []
            for code, values in (("DS_TONG", population), ("HS_TIEP_NHAN", received), ("HS_DUNG_HAN", on_time),
                                 ("TUOI_TRUNG_VI", median_age)):
                rows += [[code, period, c, v] for c, v in zip(mine["code"], values, strict=True)]
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\r\n")
            writer.writerow(list(LEGACY_COLUMNS))
            writer.writerows(rows)
            path = folder / f"chi_tieu_{period}.csv"
            path.write_bytes(buf.getvalue().encode(encoding))
            indicator_files.append(path)
        pages = []
        for r in mine.itertuples(index=False):
            old_host = f"{_slug(r.name)}.{host}"
            for k in range(1 + int(rng.integers(1, 4))):
                path = "gioi-thieu" if k == 0 else f"tin-tuc/{int(rng.integers(100, 999))}-{k}"
                pages.append({"old_url": f"https://{old_host}/{path}", "title": f"{r.name}: trang {k + 1}",
                              "old_commune_code": r.code,
                              "published_at": str(np.datetime64("2020-01-01") + int(rng.integers(0, 1900)))})
        portal = root / "cong_thong_tin" / district
        portal.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(pages).drop_duplicates("old_url")
        frame.to_csv(portal / "trang.csv", index=False)
        portal_files.append(portal / "trang.csv")
    weights = root / "bao_cao" / "weights_08.csv"
    targets = communes.set_index("code")
    from sapnhap.reference import load_reference

    ref = load_reference()
    split = ref.crosswalk[ref.crosswalk["old_commune_code"] == WEIGHTED_SPLIT]["new_commune_code"].drop_duplicates()
    shares = [0.4, 0.6][: len(split)] if len(split) == 2 else [1 / len(split)] * len(split)
    pd.DataFrame({"old_commune_code": WEIGHTED_SPLIT, "new_commune_code": split.to_numpy(), "weight": shares,
                  "basis": "population"}).to_csv(weights, index=False)
    assert WEIGHTED_SPLIT in targets.index
    return EstateFiles(root, indicator_files, weights, portal_files)


def read_indicator_exports(files: list[Path]) -> pd.DataFrame:
    """The district tools' exports as the library's values (the encoding found from the bytes)."""
    import sapnhap.codecs_vn  # noqa: F401

    frames = []
    for path in files:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("vni")  # the Bắc Quang tool: VNI bytes (declared per source in the registry)
        frame = pd.read_csv(io.StringIO(unicodedata.normalize("NFC", text)), dtype=str, keep_default_na=False)
        frames.append(frame.rename(columns=LEGACY_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def produce_estate_outputs(files: EstateFiles, out_dir: Path, s3=None) -> dict:  # noqa: ANN001 - S3Config
    """Re-aggregate the indicators per period and build the portal redirect map; store them in ``out_dir``
    (and in the bucket under ``exports/`` when ``s3`` is given). Raises when a redirect is wrong."""
    from sapnhap import storage
    from sapnhap.indicators import export_period, load_catalogue, load_weights, reaggregate
    from sapnhap.portal import PortalError, check_redirects, export_redirects, merge_content, redirect_map
    from sapnhap.reference import load_reference

    ref = load_reference()
    values = read_indicator_exports(files.indicator_files)
    result = reaggregate(values, ref, load_catalogue(), load_weights(files.weights))
    written = []
    for period in sorted(result["period"].unique()):
        written += export_period(result, period, out_dir / "indicators" / period)
    pages = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in files.portal_files], ignore_index=True)
    merged = merge_content(pages, ref)
    redirects = redirect_map(merged, valid_from=PORTAL_VALID_FROM, days=PORTAL_DAYS)
    problems = check_redirects(redirects, set(merged["new_url"]))
    if problems:
        raise PortalError(f"{len(problems)} redirects are wrong, e.g. {problems[0]}")
    written += export_redirects(redirects, out_dir / "portal")
    if s3 is not None:
        for path in written:
            key = "exports/" + path.relative_to(out_dir).as_posix()
            storage.put_file(s3, key, path, "text/plain; charset=utf-8")
    status = result["status"].value_counts().to_dict()
    return {"indicator_values": int(len(values)), "indicator_outputs": int(len(result)), "status": status,
            "old_urls": int(len(redirects)), "files": [p.relative_to(out_dir).as_posix() for p in written]}


def estate_demo(world, s3) -> dict:  # noqa: ANN001 - World, S3Config
    """What ``make demo`` runs after the nightly: generate the estate beside the world, publish its outputs."""
    files = generate_estate(world.root / "estate", seed=world.seed, size=world.size)
    with tempfile.TemporaryDirectory(prefix="sapnhap-estate-") as tmp:
        return produce_estate_outputs(files, Path(tmp), s3)
