"""Official mail of the new units (R18): one address per person, forwarding, directory, LDIF.

The address rule and its collision rule are written in ``directory.yaml`` (read it first).
"""

from __future__ import annotations

import base64
import io
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sapnhap.accounts.units import commune_slugs, province_names
from sapnhap.reference._text import fold_series

POLICY_PATH = Path(__file__).with_name("directory.yaml")
FORWARDING_COLUMNS = ["old_address", "new_address", "person_id", "kind", "valid_from", "valid_to"]
DIRECTORY_COLUMNS = [
    "new_province_code", "new_province_name", "new_commune_code", "new_commune_name", "person_id", "display_name",
    "given_name", "family_name", "address", "unit_pending",
]


def load_policy(path: Path | None = None) -> dict:
    """The mail policy (domains per new province, report recipients, forwarding period)."""
    doc = yaml.safe_load(Path(path or POLICY_PATH).read_text(encoding="utf-8"))
    doc["provinces"] = {str(k).zfill(2): v for k, v in doc["provinces"].items()}
    return doc


def local_part(full_name: pd.Series) -> pd.Series:
    """'Nguyễn Văn An' -> 'annv': given name, then the initials of family and middle names."""
    folded = fold_series(full_name).str.replace(r"[^a-z ]", "", regex=True).str.strip()
    given = folded.str.extract(r"(\S+)$", expand=False)
    initials = folded.str.replace(r"\s*\S+$", "", regex=True).str.replace(r"(\S)\S*\s*", r"\1", regex=True)
    out = given.fillna("") + initials.fillna("")
    return out.where(out != "", "canbo").astype(object)


def assign_addresses(people: pd.DataFrame, ref, policy: dict | None = None,  # noqa: ANN001 - Reference
                     reserved: pd.DataFrame | None = None) -> pd.DataFrame:
    """Give every person exactly one official address; return ``people`` with ``address``.

    ``reserved``: old addresses (columns address, person_id); a new address never equals an
    old address of someone else (its forwarding would point two ways).
    """
    policy = policy or load_policy()
    out = people.copy()
    slugs = commune_slugs(ref).set_index("code")["slug"]
    domain = out["new_province_code"].map({k: v["domain"] for k, v in policy["provinces"].items()})
    if domain.isna().any():
        missing = sorted(out.loc[domain.isna(), "new_province_code"].astype(str).unique())
        raise ValueError(f"no mail domain in directory.yaml for new provinces {missing}")
    local = local_part(out["full_name"])
    slug = out["new_commune_code"].map(slugs)
    at_commune = slug.notna() & out["unit_level"].ne("district")
    suffix_part = ("." + slug).where(at_commune, "")
    base = local + "|" + suffix_part + "@" + domain
    reserved_by = (pd.Series(dtype=object) if reserved is None
                   else reserved.assign(address=reserved["address"].str.lower()).drop_duplicates("address")
                   .set_index("address")["person_id"])
    # Order inside a base address: by citizen ID (none last), then by person id.
    order = out.assign(_base=base, _nocid=out["citizen_id"].isna(), _cid=out["citizen_id"].fillna(""))
    order = order.sort_values(["_base", "_nocid", "_cid", "person_id"])
    rank = order.groupby("_base").cumcount()
    address = _compose(order["_base"], rank)
    # Old addresses of other people are skipped (rare; bounded loop over the clashes only).
    for _ in range(20):
        owner = address.map(reserved_by)
        clash = owner.notna() & owner.ne(order["person_id"])
        if not clash.any():
            break
        bump = order.loc[clash, "_base"].unique()
        in_bumped = order["_base"].isin(bump)
        # Everyone from the first clash on in those groups moves one number up.
        first = rank[clash].groupby(order.loc[clash, "_base"]).min()
        shift = in_bumped & (rank >= order["_base"].map(first))
        rank = rank + shift.astype(int)
        address = _compose(order["_base"], rank)
    out["address"] = address.reindex(out.index)
    if out["address"].duplicated().any():
        raise AssertionError("two people got the same address")
    return out


def _compose(base: pd.Series, rank: pd.Series) -> pd.Series:
    local = base.str.split("|").str[0]
    rest = base.str.split("|").str[1]
    number = np.where(rank > 0, (rank + 1).astype(str), "")
    return (local + pd.Series(number, index=base.index) + rest).astype(object)


def forwarding_map(people: pd.DataFrame, links: pd.DataFrame, mail: pd.DataFrame, *, valid_from: date,
                   days: int = 365) -> pd.DataFrame:
    """Old address (and every alias) -> the person's new address, valid ``days`` from ``valid_from``.

    An alias that is also somebody's mailbox address, or that two mailboxes share, forwards
    by its mailbox / its first owner only: every old address forwards to exactly one place.
    """
    box = mail.assign(_record="mail:" + mail["address"].str.strip().str.lower())
    box = box.merge(links[["record_id", "person_id"]], left_on="_record", right_on="record_id", how="left")
    box = box.merge(people[["person_id", "address"]].rename(columns={"address": "new_address"}), on="person_id", how="left")
    primary = pd.DataFrame({"old_address": box["address"].str.strip().str.lower(), "new_address": box["new_address"],
                            "person_id": box["person_id"], "kind": "mailbox"})
    aliases = box[["aliases", "new_address", "person_id"]].assign(
        old_address=box["aliases"].astype("string").str.lower().str.split(";")
    ).explode("old_address")
    aliases["old_address"] = aliases["old_address"].astype("string").str.strip()
    aliases = aliases[aliases["old_address"].notna() & (aliases["old_address"] != "")]
    aliases = pd.DataFrame({"old_address": aliases["old_address"].astype(object), "new_address": aliases["new_address"],
                            "person_id": aliases["person_id"], "kind": "alias"})
    aliases = aliases[~aliases["old_address"].isin(primary["old_address"])]
    out = pd.concat([primary, aliases], ignore_index=True).drop_duplicates("old_address", keep="first")
    out["valid_from"] = pd.Timestamp(valid_from).date()
    out["valid_to"] = (pd.Timestamp(valid_from) + timedelta(days=days)).date()
    return out[FORWARDING_COLUMNS].sort_values("old_address").reset_index(drop=True)


def build_directory(people: pd.DataFrame, ref) -> pd.DataFrame:  # noqa: ANN001 - Reference
    """The directory by new province and commune (people of a former district or an undecided
    commune are listed at province level, ``unit_pending`` True for the latter)."""
    names = commune_slugs(ref).set_index("code")["name"]
    words = people["full_name"].astype("string").str.split()
    at_commune = people["new_commune_code"].notna() & people["unit_level"].ne("district")
    out = pd.DataFrame({
        "new_province_code": people["new_province_code"],
        "new_province_name": people["new_province_code"].map(province_names(ref)),
        "new_commune_code": people["new_commune_code"].where(at_commune, None),
        "new_commune_name": people["new_commune_code"].where(at_commune, None).map(names),
        "person_id": people["person_id"],
        "display_name": people["full_name"],
        "given_name": words.str[-1].astype(object),
        "family_name": words.str[0].astype(object),
        "address": people["address"],
        "unit_pending": people["unit_level"].ne("district") & people["new_commune_code"].isna(),
    })
    out = out.astype(object).where(out.notna(), None)
    return out.sort_values(["new_province_code", "new_commune_code", "address"], na_position="first")[DIRECTORY_COLUMNS] \
        .reset_index(drop=True)


def directory_csv(directory: pd.DataFrame) -> bytes:
    """The directory as UTF-8 CSV with a BOM (opens right in spreadsheet tools officials use)."""
    buf = io.StringIO()
    directory.to_csv(buf, index=False, lineterminator="\r\n")
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


# ------------------------------------------------------------------------------------------
# LDIF (RFC 2849), written by hand: a dozen lines, and no library in the environment does it better.

_SAFE_INIT = set(range(0x01, 0x80)) - {0x0A, 0x0D, 0x20, 0x3A, 0x3C}
_SAFE = set(range(0x01, 0x80)) - {0x0A, 0x0D}


def _is_safe(value: str) -> bool:
    """RFC 2849 SAFE-STRING: ASCII without NUL/LF/CR, not starting with space, ':' or '<'; no trailing space."""
    data = value.encode("utf-8")
    if not data:
        return True
    return data[0] in _SAFE_INIT and all(b in _SAFE for b in data) and not value.endswith(" ")


def _fold(line: str, width: int = 76) -> list[str]:
    """Fold a line at ``width`` characters: continuation lines start with one space."""
    if len(line) <= width:
        return [line]
    out = [line[:width]]
    rest = line[width:]
    while rest:
        out.append(" " + rest[: width - 1])
        rest = rest[width - 1:]
    return out


def ldif_line(attr: str, value: str) -> list[str]:
    """One attribute line (folded): ``attr: value`` or ``attr:: base64`` for unsafe (non-ASCII) values."""
    if _is_safe(value):
        return _fold(f"{attr}: {value}")
    return _fold(f"{attr}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}")


def _dn_value(value: str) -> str:
    """Escape a DN attribute value (RFC 4514 special characters)."""
    out = value.replace("\\", "\\\\")
    for ch in ',+"<>;=':
        out = out.replace(ch, "\\" + ch)
    if out.startswith(("#", " ")):
        out = "\\" + out
    return out


def directory_ldif(directory: pd.DataFrame, policy: dict | None = None) -> bytes:
    """The directory as an LDIF content file: an ou per new province and commune, an inetOrgPerson per person."""
    policy = policy or load_policy()
    directory = directory.astype(object).where(directory.notna(), None)
    lines = ["version: 1", ""]
    seen: set[str] = set()

    def entry(dn: str, attrs: list[tuple[str, str]]) -> None:
        lines.extend(ldif_line("dn", dn))
        for attr, value in attrs:
            if value is not None and value != "":
                lines.extend(ldif_line(attr, value))
        lines.append("")

    for row in directory.itertuples(index=False):  # one entry per person: this is the output, not a data path
        base = policy["provinces"][row.new_province_code]["ldap_base"]
        province_dn = f"ou={row.new_province_code},{base}"
        if province_dn not in seen:
            seen.add(province_dn)
            entry(province_dn, [("objectClass", "top"), ("objectClass", "organizationalUnit"),
                                ("ou", row.new_province_code), ("description", row.new_province_name or "")])
        parent = province_dn
        if row.new_commune_code:
            parent = f"ou={row.new_commune_code},{province_dn}"
            if parent not in seen:
                seen.add(parent)
                entry(parent, [("objectClass", "top"), ("objectClass", "organizationalUnit"),
                               ("ou", row.new_commune_code), ("description", row.new_commune_name or "")])
        entry(f"mail={_dn_value(row.address)},{parent}", [
            ("objectClass", "top"), ("objectClass", "person"), ("objectClass", "organizationalPerson"),
            ("objectClass", "inetOrgPerson"), ("cn", row.display_name), ("sn", row.family_name or row.display_name),
            ("givenName", row.given_name or ""), ("displayName", row.display_name), ("mail", row.address),
            ("uid", row.address.split("@")[0]), ("employeeNumber", row.person_id),
            ("ou", row.new_commune_name or row.new_province_name or ""),
        ])
    return ("\n".join(lines)).encode("utf-8")


def parse_ldif(data: bytes) -> list[dict[str, list[str]]]:
    """Read back an LDIF content file (unfolding, base64): the tests' round trip."""
    text = data.decode("utf-8").replace("\r\n", "\n")
    unfolded = text.replace("\n ", "")
    entries, current = [], {}
    for line in unfolded.split("\n"):
        if not line:
            if current:
                entries.append(current)
                current = {}
            continue
        if line.startswith("version:") and not entries and not current:
            continue
        attr, _, value = line.partition(":")
        if value.startswith(":"):
            value = base64.b64decode(value[1:].strip()).decode("utf-8")
        else:
            value = value[1:] if value.startswith(" ") else value
        current.setdefault(attr, []).append(value)
    if current:
        entries.append(current)
    return entries
