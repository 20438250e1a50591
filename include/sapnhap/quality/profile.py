"""Profiling of a raw legacy extract for the assessment run before the first load (R13).

The profile is a plain dict (JSON-serializable) that holds no personal data: counts, rates,
masked examples only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sapnhap.datasets import get_dataset
from sapnhap.dateproof import date_evidence, finding_vi
from sapnhap.quality.masking import mask_citizen_id, mask_name

# UTF-8 bytes read as Windows-1252/Latin-1: 'Ã¡' (á), 'Æ°' (ư), 'Ä‘' (đ), 'áº'/'á»' (ạ, ộ...).
_UTF8_AS_LATIN1 = r"Ã[\u0080-\u00ff]|Æ°|Æ¡|Ä[\u0080-\u00ff‘’]|á[º»]|Â[\u00a0-\u00bf]"
# Latin-1 characters that never occur in Vietnamese Unicode text but fill TCVN3 (ABC) and VNI
# text shown as Windows-1252 ('Hµ Néi', 'Nguyeãn' uses ã after e, caught by the second part).
_LEGACY_8BIT = r"[µ¶·¸¹º»¼½¾¿¦§¨©ª«¬®¯°±²³´ÆÇËÎÏÑÖ×ØÜÞßæçëîïñö÷øüþåäÅÄ]|[eE][ãâ]"
_REPLACEMENT = "\ufffd"
# Which legacy encoding: VNI writes a vowel then a mark shown as a Latin-1 letter ("Vieät"),
# TCVN3 one symbol-looking byte per toned letter ("Hµ Néi", "ViÖt").
_VNI_PAIR = r"[aeiouyAEIOUYôöÔÖ][ùøûõïâáàåãäêéèúüëÙØÛÕÏÂÁÀÅÃÄÊÉÈÚÜË]|[ñÑ][aeiouôöAEIOUÔÖ]"
_TCVN3_SYMBOL = r"[\u00a1-\u00bf]"
_SAMPLE = 5


def _text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if pd.api.types.is_object_dtype(df[c]) or pd.api.types.is_string_dtype(df[c])]


def _as_text(series: pd.Series) -> pd.Series:
    s = series.astype("object")
    s = s.where(s.map(lambda v: isinstance(v, str)), None)
    return s.astype("string")


# Letters only Unicode Vietnamese text has (never a legacy font's Latin bytes): ă đ ĩ ũ ơ ư and the toned letters.
_VIETNAMESE_UNICODE = "[\u0102\u0103\u0110\u0111\u0128\u0129\u0168\u0169\u01a0\u01a1\u01af\u01b0\u1ea0-\u1ef9]"


def text_anomalies(series: pd.Series) -> dict[str, Any]:
    """Shares of non-empty text values that are decomposed Unicode or look mis-encoded."""
    text = _as_text(series).dropna()
    n = len(text)
    if n == 0:
        return {"values": 0, "decomposed_share": 0.0, "utf8_as_latin1_share": 0.0,
                "legacy_8bit_share": 0.0, "replacement_char_share": 0.0, "legacy_vni_values": 0,
                "legacy_tcvn3_values": 0}
    decomposed = text != text.str.normalize("NFC")
    mojibake = text.str.contains(_UTF8_AS_LATIN1, regex=True)
    legacy = text.str.contains(_LEGACY_8BIT, regex=True) & ~mojibake
    replacement = text.str.contains(_REPLACEMENT, regex=False)
    suspects = text[legacy]
    return {
        "values": int(n),
        "decomposed_share": float(decomposed.mean()),
        "utf8_as_latin1_share": float(mojibake.mean()),
        "legacy_8bit_share": float(legacy.mean()),
        "replacement_char_share": float(replacement.mean()),
        "legacy_vni_values": int(suspects.str.contains(_VNI_PAIR, regex=True).sum()),
        "legacy_tcvn3_values": int(suspects.str.contains(_TCVN3_SYMBOL, regex=True).sum()),
    }


def proposed_encoding(anomalies: dict[str, Any]) -> str | None:
    """The legacy codec (``tcvn3`` or ``vni``, see :mod:`sapnhap.codecs_vn`) the suspect values point to."""
    vni, tcvn3 = anomalies.get("legacy_vni_values", 0), anomalies.get("legacy_tcvn3_values", 0)
    if not (vni or tcvn3):
        return None
    return "vni" if vni > tcvn3 else "tcvn3"


def profile_frame(
    df: pd.DataFrame,
    *,
    dataset: str,
    code_column: str | None = "old_commune_code",
    known_old_codes: set[str] | None = None,
    date_formats: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Profile a raw extract (canonical or legacy column names) of ``dataset``.

    Returns a dict with: dataset, row_count, columns (name and dtype), null_rates (missing or
    blank), distinct_counts, duplicate_keys (natural-key columns found, rows sharing a key,
    distinct keys repeated, masked examples), code_coverage (share of non-empty codes known in
    the old registry, unknown codes), text_anomalies (per text column and overall), and
    date_formats (per date/timestamp column: counts of values readable only as day/month, only
    as month/day, either way, and the problem found against the configured format of
    ``date_formats``, column -> format, if given), and findings (short Vietnamese sentences for
    the assessment report).
    """
    ds = get_dataset(dataset)
    n = len(df)
    blank = df.apply(lambda s: _as_text(s).str.strip().eq("").fillna(False).astype(bool) if s.dtype == object or pd.api.types.is_string_dtype(s) else pd.Series(False, index=s.index))
    missing = df.isna() | blank if n else df.isna()
    profile: dict[str, Any] = {
        "dataset": dataset,
        "row_count": int(n),
        "columns": [{"name": str(c), "dtype": str(df[c].dtype)} for c in df.columns],
        "null_rates": {str(c): (float(missing[c].mean()) if n else 0.0) for c in df.columns},
        "distinct_counts": {str(c): int(df[c].nunique(dropna=True)) for c in df.columns},
    }
    missing_canonical = [c.name for c in ds.columns if c.required and c.name not in df.columns]
    profile["missing_required_columns"] = missing_canonical

    key = [c for c in ds.natural_key if c in df.columns]
    dup_info: dict[str, Any] = {"key": list(ds.natural_key), "key_present": key == list(ds.natural_key)}
    if key and n:
        keys = df[key].astype("object").where(df[key].notna(), None)
        if len(key) == 1:
            norm = _as_text(keys[key[0]]).str.strip()
            frame = norm.to_frame(key[0])
        else:
            frame = pd.DataFrame({k: _as_text(keys[k]).str.strip() for k in key})
        complete = frame.notna().all(axis=1)
        dup_mask = frame[complete].duplicated(keep=False)
        dup_rows = frame[complete][dup_mask]
        examples = dup_rows.drop_duplicates().head(_SAMPLE)
        for k in key:
            col = ds.column(k)
            if col.pii:
                examples[k] = (mask_citizen_id if col.type == "citizen_id" else mask_name)(examples[k]).to_numpy()
        dup_info.update(
            rows_with_missing_key=int((~complete).sum()),
            duplicate_rows=int(dup_mask.sum()),
            duplicate_keys=int(len(dup_rows.drop_duplicates())),
            examples=examples.astype("object").to_dict("records"),
        )
    else:
        dup_info.update(rows_with_missing_key=int(n) if not key else 0, duplicate_rows=0, duplicate_keys=0, examples=[])
    profile["duplicate_keys"] = dup_info

    coverage: dict[str, Any] = {"column": code_column, "checked": False}
    if code_column and code_column in df.columns:
        codes = _as_text(df[code_column].astype("object").map(lambda v: None if v is None or v != v else str(v))).str.strip()
        # Spreadsheets drop leading zeros; the transform pads them back, so count them as it will.
        digits = codes.str.fullmatch(r"\d{1,5}").fillna(False).astype(bool)
        codes = codes.where(~digits, codes.str.zfill(5)).replace("", pd.NA)
        present = codes.dropna()
        coverage.update(non_empty=int(len(present)), missing=int(n - len(present)), distinct=int(present.nunique()))
        if known_old_codes is not None:
            known = present.isin(set(known_old_codes))
            unknown = present[~known]
            coverage.update(
                checked=True,
                known_share=float(known.mean()) if len(present) else 1.0,
                unknown_rows=int((~known).sum()),
                unknown_codes=sorted(unknown.unique().tolist())[:50],
            )
    profile["code_coverage"] = coverage

    per_column = {str(c): text_anomalies(df[c]) for c in _text_columns(df)}
    per_column = {c: v for c, v in per_column.items() if v["values"]}
    total = sum(v["values"] for v in per_column.values())

    def overall(name: str) -> float:
        return float(sum(v[name] * v["values"] for v in per_column.values()) / total) if total else 0.0

    profile["text_anomalies"] = {
        "columns": per_column,
        "decomposed_share": overall("decomposed_share"),
        "utf8_as_latin1_share": overall("utf8_as_latin1_share"),
        "legacy_8bit_share": overall("legacy_8bit_share"),
        "replacement_char_share": overall("replacement_char_share"),
    }
    profile["text_anomalies"]["proposed_encoding"] = proposed_encoding({
        name: sum(v[name] for v in per_column.values()) for name in ("legacy_vni_values", "legacy_tcvn3_values")
    })
    # Per column (``column_encodings:``), when other columns already hold Unicode Vietnamese.
    legacy_columns = {c: codec for c, v in per_column.items() if c in ds.column_names and (codec := proposed_encoding(v))}
    unicode_columns = [c for c in per_column if c not in legacy_columns
                       and _as_text(df[c]).str.contains(_VIETNAMESE_UNICODE, regex=True).any()]
    profile["text_anomalies"]["proposed_column_encodings"] = legacy_columns if unicode_columns else {}
    configured = date_formats or {}
    date_columns = [c.name for c in ds.columns if c.type in ("date", "timestamp") and c.name in df.columns]
    profile["date_formats"] = {
        c: {"format": configured.get(c), **date_evidence(df[c], configured.get(c))} for c in date_columns
    }
    profile["findings"] = _findings(profile)
    return profile


def _findings(p: dict[str, Any]) -> list[str]:
    out = []
    if p["missing_required_columns"]:
        out.append(f"Thiếu cột bắt buộc: {', '.join(p['missing_required_columns'])}.")
    d = p["duplicate_keys"]
    if d.get("duplicate_rows"):
        out.append(f"{d['duplicate_rows']} bản ghi trùng khoá ({d['duplicate_keys']} khoá).")
    cov = p["code_coverage"]
    if cov.get("checked") and cov.get("unknown_rows"):
        out.append(f"{cov['unknown_rows']} bản ghi có mã xã cũ không có trong danh mục ({1 - cov['known_share']:.1%}).")
    for column, ev in p.get("date_formats", {}).items():
        if ev["problem"]:
            out.append(finding_vi(column, ev["format"], ev))
    t = p["text_anomalies"]
    if t["decomposed_share"] > 0:
        out.append(f"{t['decomposed_share']:.1%} giá trị văn bản ở dạng Unicode tổ hợp (NFD).")
    if t["utf8_as_latin1_share"] > 0:
        out.append(f"{t['utf8_as_latin1_share']:.1%} giá trị văn bản nghi lỗi mã hoá (UTF-8 đọc nhầm).")
    if t["legacy_8bit_share"] > 0:
        out.append(f"{t['legacy_8bit_share']:.1%} giá trị văn bản nghi mã cũ TCVN3/VNI.")
        per_column = t.get("proposed_column_encodings")
        if per_column:
            listed = ", ".join(f"{c}: {codec}" for c, codec in per_column.items())
            out.append(f"Đề xuất khai báo column_encodings: {{{listed}}} (các cột văn bản khác đã là Unicode).")
        elif t.get("proposed_encoding"):
            out.append(f"Đề xuất khai báo encoding: {t['proposed_encoding']} cho nguồn này (tệp xuất hoặc cột văn bản).")
    if t["replacement_char_share"] > 0:
        out.append(f"{t['replacement_char_share']:.1%} giá trị văn bản chứa ký tự lỗi (\ufffd).")
    return out
