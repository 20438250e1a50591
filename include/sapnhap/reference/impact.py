"""Dry-run impact of moving from one reference version to another (R14)."""

from __future__ import annotations

import pandas as pd

from sapnhap.reference import Reference
from sapnhap.reference.convert import convert_codes


def impact_report(old: Reference, new: Reference, records: pd.DataFrame, **convert_kwargs) -> pd.DataFrame:
    """Count, per new commune of `new`, the records whose unit would change from `old`.

    `records` carry old unit codes (column old_commune_code unless `old_commune_col` is
    passed; other keyword arguments go to `convert_codes`, e.g. rules and decisions).
    Returns one row per (new_province_code, new_commune_code) under `new` with:
    new_commune_name, n_records, n_changed (different code or status than under `old`),
    previous_codes ("06970" or "06970|..." the codes these records had under `old`),
    sorted by n_changed descending. Records unresolved under `new` appear with an empty
    new_commune_code.
    """
    before = convert_codes(records, old, **convert_kwargs)
    after = convert_codes(records, new, **convert_kwargs)
    pairs = pd.DataFrame(
        {
            "new_province_code": after["new_province_code"].astype(object),
            "new_commune_code": after["new_commune_code"].astype(object),
            "previous_code": before["new_commune_code"].astype(object),
            "changed": (after["new_commune_code"].astype(object).fillna("") != before["new_commune_code"].astype(object).fillna(""))
            | (after["mapping_status"].astype(object) != before["mapping_status"].astype(object)),
        }
    )
    # Aggregate distinct (after, before) pairs first: records are many, pairs few.
    counted = pairs.value_counts(dropna=False).rename("n").reset_index()
    report = counted.groupby(["new_province_code", "new_commune_code"], dropna=False).agg(
        n_records=("n", "sum"),
        n_changed=("n", lambda n: int(n[counted.loc[n.index, "changed"]].sum())),
        previous_codes=("previous_code", lambda codes: "|".join(sorted({c for c in codes if isinstance(c, str)}))),
    )
    report = report.reset_index()
    names = new.new_units[(new.new_units["level"] == "commune") & new.new_units["valid_to"].isna()]
    report.insert(2, "new_commune_name", report["new_commune_code"].map(names.set_index("code")["name"]))
    report.attrs["from_version"], report.attrs["to_version"] = old.version, new.version
    return report.sort_values(["n_changed", "n_records"], ascending=False).reset_index(drop=True)


def platform_records(dsn: str) -> pd.DataFrame:
    """The records of the platform that carry a unit: dataset, key, old commune code, address detail."""
    import psycopg

    from sapnhap.datasets import DATASETS

    parts = []
    with psycopg.connect(dsn) as conn:
        for ds in DATASETS.values():
            if not ds.has_unit:
                continue
            exists = conn.execute("SELECT to_regclass(%s)", (f"core.{ds.name}",)).fetchone()[0]
            if exists is None:
                continue
            detail = "address_detail" if "address_detail" in ds.column_names else "NULL"
            rows = conn.execute(
                f"SELECT source_id || ':' || source_key, old_commune_code, {detail} FROM core.{ds.name}"
            ).fetchall()
            frame = pd.DataFrame(rows, columns=["record_key", "old_commune_code", "address_detail"])
            parts.append(frame.assign(dataset=ds.name))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["record_key", "old_commune_code", "address_detail", "dataset"]
    )


def platform_impact(dsn: str, old: Reference, new: Reference) -> pd.DataFrame:
    """Dry run of a reference change on the platform: :func:`impact_report` over every loaded record.

    Province rules and the data team's decisions apply under both versions, as in the nightly run.
    """
    from sapnhap.reference import load_split_rules
    from sapnhap.reference.platform import load_decisions

    records = platform_records(dsn)
    return impact_report(
        old, new, records, address_detail_col="address_detail", record_key_col="record_key",
        rules=load_split_rules(), decisions=load_decisions(dsn),
    )
