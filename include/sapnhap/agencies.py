"""The province-maintained agency crosswalk: old issuing/receiving units -> units of the new structure (R16).

Documents (văn bản đến/đi) name their issuing and receiving units: old commune People's
Committees, abolished district offices, merged provincial departments. The province keeps one CSV
per new province (``old_agency_code, old_agency_name, new_agency_code, new_agency_name,
valid_from, valid_to, note``): an old agency maps to one new agency for a period. A document is
re-mapped by the row in force on its own date, so a unit renamed twice maps by when it acted.
An agency with no row in force is ``unknown`` (the document waits for the province), and two rows
in force at once is an error of the file, never a choice.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

AGENCY_COLUMNS = ["old_agency_code", "old_agency_name", "new_agency_code", "new_agency_name", "valid_from", "valid_to"]


class AgencyCrosswalkError(ValueError):
    """A crosswalk file that cannot be used; the message names file, line and field."""


def load_agency_crosswalk(path: Path) -> pd.DataFrame:
    """Read and check a province's agency crosswalk (dates ISO, periods of one old agency not overlapping)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in AGENCY_COLUMNS if c not in frame.columns]
    if missing:
        raise AgencyCrosswalkError(f"{path.name}: missing columns {missing}")
    for col in ("old_agency_code", "new_agency_code", "valid_from"):
        empty = frame.index[frame[col].str.strip() == ""]
        if len(empty):
            raise AgencyCrosswalkError(f"{path.name}: line {int(empty[0]) + 2}, field {col}: empty")
    out = frame.copy()
    for col in ("valid_from", "valid_to"):
        parsed = pd.to_datetime(out[col].where(out[col] != ""), format="%Y-%m-%d", errors="coerce")
        bad = out.index[(out[col] != "") & parsed.isna()]
        if len(bad):
            raise AgencyCrosswalkError(f"{path.name}: line {int(bad[0]) + 2}, field {col}: not a date YYYY-MM-DD")
        out[col] = parsed
    backwards = out.index[out["valid_to"].notna() & (out["valid_to"] <= out["valid_from"])]
    if len(backwards):
        raise AgencyCrosswalkError(f"{path.name}: line {int(backwards[0]) + 2}: valid_to is not after valid_from")
    ordered = out.sort_values(["old_agency_code", "valid_from"])
    prev_to = ordered.groupby("old_agency_code")["valid_to"].shift()
    same = ordered["old_agency_code"].eq(ordered["old_agency_code"].shift())
    overlap = ordered.index[same & (prev_to.isna() | (ordered["valid_from"] < prev_to))]
    if len(overlap):
        row = out.loc[overlap[0]]
        raise AgencyCrosswalkError(
            f"{path.name}: line {int(overlap[0]) + 2}: old agency {row['old_agency_code']} has two rows in force at once"
        )
    return out[AGENCY_COLUMNS + [c for c in out.columns if c not in AGENCY_COLUMNS]]


def remap_agencies(frame: pd.DataFrame, crosswalk: pd.DataFrame, *, code_col: str, date_col: str,
                   prefix: str) -> pd.DataFrame:
    """Add ``<prefix>_new_agency_code``, ``<prefix>_new_agency_name`` and ``<prefix>_agency_status``.

    Status: ``mapped`` (a row in force on the record's date), ``unknown`` (none), ``missing``
    (the record names no agency). Vectorized: one merge_asof over the whole frame.
    """
    out = frame.copy()
    out["_row"] = range(len(out))
    # One resolution on both sides: merge_asof refuses date columns of different units (ms vs ns).
    when = pd.to_datetime(out[date_col], errors="coerce").astype("datetime64[ns]")
    codes = out[code_col].astype("string")
    probe = pd.DataFrame({"_row": out["_row"], "old_agency_code": codes, "_when": when})
    known = probe[probe["old_agency_code"].notna() & probe["_when"].notna()].sort_values("_when")
    xw = crosswalk.sort_values("valid_from").astype({"old_agency_code": "string", "valid_from": "datetime64[ns]",
                                                     "valid_to": "datetime64[ns]"})
    hit = pd.merge_asof(known, xw, left_on="_when", right_on="valid_from", by="old_agency_code", direction="backward")
    in_force = hit["new_agency_code"].notna() & (hit["valid_to"].isna() | (hit["_when"] < hit["valid_to"]))
    hit = hit[in_force].set_index("_row")
    for col in ("new_agency_code", "new_agency_name"):
        values = out["_row"].map(hit[col]).astype(object)
        out[f"{prefix}_{col}"] = values.where(values.notna(), None)
    status = pd.Series("unknown", index=out.index, dtype=object)
    status[out[f"{prefix}_new_agency_code"].notna()] = "mapped"
    status[codes.isna() | (codes.str.strip() == "")] = "missing"
    out[f"{prefix}_agency_status"] = status
    return out.drop(columns="_row")


def main(argv: list[str] | None = None) -> int:
    """``python -m sapnhap.agencies impact|remap [--platform-url ...]``: a new agency crosswalk on the platform.

    ``impact`` is the dry run (which loaded documents and steps would change agency, nothing
    written); ``remap`` publishes the crosswalk and re-maps them (what the nightly's prepare does).
    """
    import argparse
    import os
    import sys

    from sapnhap.documents import agency_impact, remap_loaded_documents
    from sapnhap.services import postgres_dsn_from_url

    parser = argparse.ArgumentParser(prog="python -m sapnhap.agencies", description=main.__doc__)
    parser.add_argument("command", choices=["impact", "remap"])
    parser.add_argument("--platform-url", help="postgresql://... (default: SAPNHAP_PLATFORM_URL)")
    parser.add_argument("--dir", type=Path, help="folder of agencies_<province>.csv (default: SAPNHAP_AGENCIES_DIR "
                                                  "or the files shipped)")
    args = parser.parse_args(argv)
    url = args.platform_url or os.environ.get("SAPNHAP_PLATFORM_URL")
    if not url:
        sys.stderr.write("Cần --platform-url hoặc biến môi trường SAPNHAP_PLATFORM_URL.\n")
        return 2
    dsn = postgres_dsn_from_url(url)
    if args.command == "remap":
        done = remap_loaded_documents(dsn, directory=args.dir)
        sys.stdout.write(
            f"Bảng chuyển đổi cơ quan {done['version']}: " + (
                f"đã chuyển {done['documents']} văn bản và {done['document_steps']} bước xử lý sang phiên bản này.\n"
                if done["applied"] else "đã áp dụng trước đó, không thay đổi gì.\n"))
        return 0
    report = agency_impact(dsn, args.dir)
    changed = report[report["changed"]]
    sys.stdout.write(
        f"Chạy thử bảng chuyển đổi cơ quan {report.attrs['version']}: {int(changed['n_records'].sum())} / "
        f"{int(report['n_records'].sum())} bản ghi (văn bản, bước xử lý) sẽ đổi cơ quan; "
        f"{int(report['behind'].sum())} bản ghi đang theo phiên bản khác.\n")
    pd.set_option("display.width", 200)
    sys.stdout.write((changed.to_string(index=False) if not changed.empty else "Không có bản ghi nào đổi cơ quan.") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
