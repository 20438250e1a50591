"""Masking of personal data for quarantine reports, logs and emails (R4, Decree 13/2023).

Both functions are vectorized and never return the full value: an official reading a report
can recognise a record (first/last digits, initials) without learning the identity.
"""

from __future__ import annotations

import pandas as pd

# A citizen ID keeps its first 3 (province of birth) and last 3 digits; anything shorter than
# this shows no character at all, since keeping 3 + 3 would reveal most of it.
_CITIZEN_ID_KEEP = 3
_CITIZEN_ID_MIN_LENGTH_TO_KEEP = 10


def _as_text(series: pd.Series | list) -> pd.Series:
    """Return an object Series of str/None, whatever the input dtype."""
    s = series if isinstance(series, pd.Series) else pd.Series(series, dtype="object")
    s = s.astype("object")
    return s.where(s.notna(), None).map(lambda v: v if v is None or isinstance(v, str) else str(v))


def mask_citizen_id(series: pd.Series | list) -> pd.Series:
    """Mask citizen IDs: '001203012345' -> '001******345'; missing stays missing.

    Values shorter than 10 characters are fully replaced by '*' (same length).
    """
    text = _as_text(series).astype("string").str.strip()
    length = text.str.len()
    keep = _CITIZEN_ID_KEEP
    stars_middle = text.str.slice(keep, -keep).str.replace(r".", "*", regex=True)
    partial = text.str.slice(0, keep) + stars_middle + text.str.slice(-keep)
    full = text.str.replace(r".", "*", regex=True)
    out = partial.where(length >= _CITIZEN_ID_MIN_LENGTH_TO_KEEP, full)
    return out.astype("object").where(out.notna(), None)


def mask_name(series: pd.Series | list) -> pd.Series:
    """Mask person names to initials: 'Nguyễn Văn An' -> 'N***** V** A*'; missing stays missing.

    Text is NFC-normalized first, so decomposed accents cannot slip through unmasked. A name
    with nothing to mask (a single letter) is replaced by '*'.
    """
    text = _as_text(series).astype("string").str.normalize("NFC").str.strip()
    masked = text.str.replace(r"(?<=\S)\S", "*", regex=True)
    masked = masked.where((masked != text) | text.isna(), text.str.replace(r"\S", "*", regex=True))
    return masked.astype("object").where(masked.notna(), None)


def mask_classified(text: pd.Series | list, security_level: pd.Series | list, placeholder: str = "***") -> pd.Series:
    """Text of classified documents replaced by ``placeholder``: only ``normal`` (or missing text) shows.

    A document whose security level is confidential, secret, top secret, or not known at all is
    classified here (the safe side); its text never reaches a reader without clearance.
    """
    values = _as_text(text).reset_index(drop=True)
    levels = _as_text(security_level).reset_index(drop=True)
    shown = ((levels == "normal") | values.isna()).to_numpy(dtype=bool)
    return pd.Series([(v if isinstance(v, str) else None) if keep else placeholder
                      for v, keep in zip(values, shown, strict=True)], dtype="object")
