"""Command line: look up old -> new and new -> old units from the committed dataset.

    python -m sapnhap.reference lookup 26740 --scheme old
    python -m sapnhap.reference lookup 26740 --scheme new
    python -m sapnhap.reference lookup "ben nghe"          # by name, accent-insensitive
    python -m sapnhap.reference impact --to vpd-2026.07    # dry run of a new version on the platform
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from sapnhap.reference import Reference, load_reference
from sapnhap.reference._text import fold


def _date_vn(iso: str | None) -> str:
    return "" if not iso else f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}"


def _old_chain(ref: Reference, commune_code: str | None, district_code: str, province_code: str) -> str:
    units = ref.old_units.set_index(["level", "code"])["name"]
    parts = [units.get(("commune", commune_code))] if commune_code else []
    parts += [units.get(("district", district_code)), units.get(("province", province_code))]
    return ", ".join(p for p in parts if p)


def describe_old(ref: Reference, code: str) -> list[str]:
    """Return lines telling where old commune (or island district) `code` went."""
    cw = ref.crosswalk
    rows = cw[(cw["old_commune_code"] == code) | ((cw["old_unit_level"] == "district") & (cw["old_district_code"] == code))]
    if rows.empty:
        return [f"Mã cũ {code}: không có trong bảng chuyển đổi {ref.version}."]
    first = rows.iloc[0]
    new_provinces = ref.new_units[ref.new_units["level"] == "province"].set_index("code")["name"]
    head = (
        f"Mã cũ {code}: {_old_chain(ref, first['old_commune_code'], first['old_district_code'], first['old_province_code'])}"
        f" (đến {_date_vn('2025-06-30')})"
    )
    lines = [head]
    if len(rows) > 1:
        lines.append(f"  Từ {_date_vn(ref.effective_from)} được TÁCH về {len(rows)} đơn vị mới (cần thôn/tổ dân phố để xác định):")
    else:
        lines.append(f"  Từ {_date_vn(ref.effective_from)}:")
    for row in rows.itertuples():
        lines.append(
            f"  → {row.new_commune_name} ({row.new_commune_code}), {new_provinces.get(row.new_province_code, row.new_province_code)}"
            f"  [{row.note or ''}]"
        )
    return lines


def describe_new(ref: Reference, code: str) -> list[str]:
    """Return lines telling which old units formed new commune `code`."""
    units = ref.current_new_units()
    unit = units[(units["level"] == "commune") & (units["code"] == code)]
    if unit.empty:
        return [f"Mã mới {code}: không có trong danh mục {ref.version}."]
    province = units[(units["level"] == "province") & (units["code"] == unit.iloc[0]["province_code"])]["name"].iloc[0]
    lines = [f"Mã mới {code}: {unit.iloc[0]['name']}, {province} (từ {_date_vn(unit.iloc[0]['valid_from'])})", "  Hình thành từ:"]
    rows = ref.crosswalk[ref.crosswalk["new_commune_code"] == code]
    for row in rows.itertuples():
        split = f" (một phần; mã cũ tách về {row.n_targets} đơn vị)" if row.is_split else ""
        label = f"mã cũ {row.old_commune_code}" if row.old_commune_code else f"huyện mã cũ {row.old_district_code}"
        lines.append(
            f"  ← {_old_chain(ref, row.old_commune_code, row.old_district_code, row.old_province_code)} ({label})"
            f"  [{row.note or ''}]{split}"
        )
    return lines


def lookup(ref: Reference, query: str, scheme: str | None) -> list[str]:
    """Return the Vietnamese lines answering a lookup by code (with scheme) or by name."""
    query = query.strip()
    if query.isdigit():
        code = query.zfill(5) if len(query) > 3 else query.zfill(3)
        if scheme == "new":
            return describe_new(ref, code)
        if scheme == "old":
            return describe_old(ref, code)
        return ["Cùng một mã có thể là hai đơn vị khác nhau trước và sau 01/07/2025:", *describe_old(ref, code), "",
                *describe_new(ref, code)]  # fmt: skip
    key = fold(query)
    lines: list[str] = []
    if scheme in (None, "old"):
        old = ref.old_units[ref.old_units["level"] == "commune"]
        hits = old[old["name"].map(fold).str.contains(rf"\b{key}$", regex=True)]
        for code in hits["code"]:
            lines += [*describe_old(ref, code), ""]
    if scheme in (None, "new"):
        new = ref.current_new_units()
        new = new[new["level"] == "commune"]
        hits = new[new["name"].map(fold).str.contains(rf"\b{key}$", regex=True)]
        for code in hits["code"]:
            lines += [*describe_new(ref, code), ""]
    return lines or [f"Không tìm thấy đơn vị nào tên '{query}'."]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m sapnhap.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    look = commands.add_parser("lookup", help="old -> new / new -> old by code or name")
    look.add_argument("query", help="a 5-digit commune code (3-digit district) or a name")
    look.add_argument("--scheme", choices=["old", "new"], help="which scheme the code belongs to")
    look.add_argument("--version", help="crosswalk version (default: current)")
    impact = commands.add_parser("impact", help="dry run: platform records that would change unit under a version")
    impact.add_argument("--from", dest="old", help="version in force (default: current)")
    impact.add_argument("--to", dest="new", required=True, help="the new version, e.g. vpd-2026.07")
    impact.add_argument("--platform-url", help="postgresql://... (default: SAPNHAP_PLATFORM_URL)")
    args = parser.parse_args(argv)
    if args.command == "impact":
        return _impact(args.old, args.new, args.platform_url)
    ref = load_reference(args.version)
    pd.set_option("display.width", 200)
    sys.stdout.write("\n".join(lookup(ref, args.query, args.scheme)).rstrip() + "\n")
    return 0


def _impact(old: str | None, new: str, url: str | None) -> int:
    import os

    from sapnhap.reference.impact import platform_impact
    from sapnhap.services import postgres_dsn_from_url

    url = url or os.environ.get("SAPNHAP_PLATFORM_URL")
    if not url:
        sys.stderr.write("Cần --platform-url hoặc biến môi trường SAPNHAP_PLATFORM_URL.\n")
        return 2
    report = platform_impact(postgres_dsn_from_url(url), load_reference(old), load_reference(new))
    changed = report[report["n_changed"] > 0]
    sys.stdout.write(
        f"Chạy thử {load_reference(old).version} -> {load_reference(new).version}: "
        f"{int(report['n_changed'].sum())} / {int(report['n_records'].sum())} bản ghi sẽ đổi đơn vị, "
        f"tại {len(changed)} xã/phường mới.\n"
    )
    pd.set_option("display.width", 200)
    sys.stdout.write((changed.to_string(index=False) if not changed.empty else "Không có bản ghi nào đổi đơn vị.") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
