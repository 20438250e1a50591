"""Accounts, permissions and mail directories re-mapped to the new structure (R12, R18; issue 6).

    people, links, review = match_people(accounts, mail)       # who is who across systems
    new_accounts, orphans = remap_roles(accounts, load_role_rules(), ref)
    account_set = build_account_set(accounts, mail, ref, as_of=date)  # + addresses, forwarding, directory
    send_permission_reviews(services)                           # one masked email per new unit

Inputs are the rows of ``core.accounts`` and ``core.mail_directory`` the nightly sync loaded;
rules live in ``role_rules.yaml`` and ``directory.yaml`` beside this module.
"""

from sapnhap.accounts.build import AccountSet, build_account_set
from sapnhap.accounts.directory import (
    assign_addresses,
    build_directory,
    directory_csv,
    directory_ldif,
    forwarding_map,
    load_policy,
    parse_ldif,
)
from sapnhap.accounts.matching import match_people
from sapnhap.accounts.report import build_unit_reviews, send_permission_reviews
from sapnhap.accounts.roles import RoleRules, RoleRulesError, load_role_rules, remap_roles

__all__ = [
    "AccountSet",
    "RoleRules",
    "RoleRulesError",
    "assign_addresses",
    "build_account_set",
    "build_directory",
    "build_unit_reviews",
    "directory_csv",
    "directory_ldif",
    "forwarding_map",
    "load_policy",
    "load_role_rules",
    "match_people",
    "parse_ldif",
    "remap_roles",
    "send_permission_reviews",
]
