"""Text cleaned and repaired at the boundary, before the transform reads a value.

Two faults of legacy text, each fixed in place with the row flagged and counted:

- **cleaning**: NUL and other control characters (PostgreSQL refuses NUL in text, so one such
  value failed a whole COPY), non-breaking spaces (made plain spaces) and zero-width characters
  (removed). Runs in Arrow: no per-value Python.
- **mojibake**: UTF-8 text once read as Windows-1252 ("Tráº§n Thá»‹ BÃ¬nh") is repaired with
  ``ftfy``. A vectorized pre-filter picks the values that look like it; only those go to ftfy,
  and a value counts as repaired only when ftfy changed it.

The raw backup keeps the original values: only the transformed frame holds the repaired ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TEXT_REPAIRS_COLUMN = "text_repairs"
CLEANED = "cleaned"
MOJIBAKE = "mojibake"
DECODED = "decoded"
LEGACY_CODECS = ("tcvn3", "vni")

# C0 controls except tab, newline and carriage return; DEL; C1 controls.
_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}"
_ZERO_WIDTH = r"\x{200b}-\x{200d}\x{2060}\x{feff}"
_NBSP = r"\x{a0}\x{2007}\x{202f}"
_DIRTY_RE = f"[{_CONTROL}{_ZERO_WIDTH}{_NBSP}]"
_DROP_RE = f"[{_CONTROL}{_ZERO_WIDTH}]"
_SPACE_RE = f"[{_NBSP}]"


def _cp1252_chars(lo: int, hi: int) -> str:
    """The characters bytes lo..hi show as under Windows-1252 (Latin-1 where 1252 has a hole)."""
    out = []
    for b in range(lo, hi + 1):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return "".join(out)


def _re2_class(chars: str) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in sorted(set(chars)))


# A UTF-8 lead byte (0xC2-0xF4) shown as 1252, then a continuation byte (0x80-0xBF) shown as 1252.
# Vietnamese letters never follow one another so: the continuation range holds no letters.
MOJIBAKE_RE = f"[{_re2_class(_cp1252_chars(0xC2, 0xF4))}][{_re2_class(_cp1252_chars(0x80, 0xBF))}]"


@dataclass
class TextRepairs:
    """What cleaning and repair changed: per-row flags and the rows counted per kind."""

    flags: pd.Series  # text per row: "column:kind;column:kind", or None when nothing changed
    cleaned_rows: int
    repaired_rows: int
    decoded_rows: int = 0


def _as_arrow(series: pd.Series) -> pa.Array | None:
    try:
        return pa.array(series.astype("object").to_numpy(), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # not text (numbers from a spreadsheet): nothing to clean


def _mask(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def _case_changed(before: str, after: str) -> bool:
    """True when an upper-case value would gain lower-case letters ("NGÃ" + NBSP + "BA" is Vietnamese).

    Mojibake of upper-case letters stays upper case (Đ shows as Ä and a C1 control); "Ã" + NBSP is
    the mojibake of a lower-case à only.
    """
    return before == before.upper() and after != after.upper()


def repair_mojibake(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Repair values that look like UTF-8 read as Windows-1252; returns (values, changed mask)."""
    import ftfy

    changed = np.zeros(len(arr), dtype=bool)
    suspects = np.flatnonzero(_mask(pc.match_substring_regex(arr, MOJIBAKE_RE)))
    if not suspects.size:
        return arr, changed
    before = arr.take(pa.array(suspects)).to_pylist()
    # Only the pre-filtered values reach Python; ftfy decides whether each really is mojibake.
    after = [ftfy.fix_encoding(v) for v in before]
    hit = np.array([a != b and not _case_changed(b, a) for a, b in zip(after, before, strict=True)], dtype=bool)
    if not hit.any():
        return arr, changed
    values = arr.to_numpy(zero_copy_only=False).astype(object)
    values[suspects[hit]] = np.array(after, dtype=object)[hit]
    changed[suspects[hit]] = True
    return pa.array(values, type=pa.string()), changed


def clean_controls(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Drop control and zero-width characters, make non-breaking spaces plain; (values, changed mask)."""
    dirty = _mask(pc.match_substring_regex(arr, _DIRTY_RE))
    if not dirty.any():
        return arr, dirty
    cleaned = pc.replace_substring_regex(pc.replace_substring_regex(arr, _DROP_RE, ""), _SPACE_RE, " ")
    return cleaned, dirty


# Windows-1252's characters for bytes 0x80-0x9F, back to their bytes.
_CP1252_BACK = {bytes([b]).decode("cp1252"): b for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}


def _legacy_bytes(text: str) -> bytes | None:
    """The 8-bit bytes a database showed as Windows-1252/Latin-1 text; None if the text is real Unicode."""
    out = bytearray()
    for ch in text:
        b = _CP1252_BACK.get(ch, ord(ch))
        if b > 0xFF:
            return None
        out.append(b)
    return bytes(out)


def decode_legacy(arr: pa.Array, codec: str) -> tuple[pa.Array, np.ndarray]:
    """Re-read text a database returned as 8-bit Latin text through a legacy codec (``tcvn3``, ``vni``)."""
    import sapnhap.codecs_vn  # noqa: F401 - registers the codecs

    suspects = np.flatnonzero(_mask(pc.match_substring_regex(arr, r"[\x{80}-\x{ff}\x{152}-\x{2122}]")))
    changed = np.zeros(len(arr), dtype=bool)
    if not suspects.size:
        return arr, changed
    before = arr.take(pa.array(suspects)).to_pylist()
    raw = [_legacy_bytes(v) for v in before]
    after = [v if b is None else b.decode(codec, errors="replace") for v, b in zip(before, raw, strict=True)]
    hit = np.array([a != b for a, b in zip(after, before, strict=True)], dtype=bool)
    if not hit.any():
        return arr, changed
    values = arr.to_numpy(zero_copy_only=False).astype(object)
    values[suspects[hit]] = np.array(after, dtype=object)[hit]
    changed[suspects[hit]] = True
    return pa.array(values, type=pa.string()), changed


def repair_frame(
    frame: pd.DataFrame, columns: dict[str, str], *, legacy_codec: str | None = None,
    legacy_codecs: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, TextRepairs]:
    """Clean and repair the text of ``columns`` (frame column -> name used in the flags).

    ``legacy_codec`` (``tcvn3`` or ``vni``): the values are a legacy encoding's bytes that a
    database returned as Windows-1252/Latin-1 text; they are decoded first (flag ``decoded``).
    ``legacy_codecs`` names the codec per frame column instead (a column absent from it has none).
    Returns a copy with the repaired values and the per-row flags; other columns are untouched.
    """
    out = frame.copy()
    flags = np.full(len(frame), "", dtype=object)
    cleaned_any = np.zeros(len(frame), dtype=bool)
    repaired_any = np.zeros(len(frame), dtype=bool)
    decoded_any = np.zeros(len(frame), dtype=bool)
    for col, label in columns.items():
        if col not in frame.columns or not len(frame):
            continue
        arr = _as_arrow(frame[col])
        if arr is None:
            continue
        none = np.zeros(len(frame), dtype=bool)
        codec = legacy_codecs.get(col) if legacy_codecs is not None else legacy_codec
        # Legacy-encoded text is not mojibake: its Latin letters are the codec's, not UTF-8's.
        arr, decoded = decode_legacy(arr, codec) if codec else (arr, none)
        arr, repaired = (arr, none) if codec else repair_mojibake(arr)
        arr, cleaned = clean_controls(arr)
        if not (repaired.any() or cleaned.any() or decoded.any()):
            continue
        out[col] = pd.Series(arr.to_numpy(zero_copy_only=False), index=frame.index, dtype="object")
        flags = np.where(decoded, flags + f"{label}:{DECODED};", flags)
        flags = np.where(repaired, flags + f"{label}:{MOJIBAKE};", flags)
        flags = np.where(cleaned, flags + f"{label}:{CLEANED};", flags)
        cleaned_any |= cleaned
        repaired_any |= repaired
        decoded_any |= decoded
    text = pd.Series(flags, index=frame.index, dtype="object").str.rstrip(";")
    text = text.where(text != "", None)
    return out, TextRepairs(text, int(cleaned_any.sum()), int(repaired_any.sum()), int(decoded_any.sum()))
