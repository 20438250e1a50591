"""Canonical target schemas of the datasets the platform consolidates: one file per dataset.

Each dataset's file (``sapnhap/datasets/<dataset>.py``) holds its schema (:class:`Dataset`) and
its own quality checks side by side: ``DATASET`` and ``transformed_checks(generic)``, which
:mod:`sapnhap.quality.suites` calls to generate the committed suites in ``expectations/``.
Adding a dataset is adding such a file and listing it in :data:`DATASET_FILES` below (see
docs/architecture.md, "A dataset in one file").

Every legacy source maps its own column names onto these (see ``include/sources/*.yaml``).
Each dataset also carries lineage columns once transformed (see ``sapnhap.platform.LINEAGE_DDL``).
"""

from __future__ import annotations

from types import ModuleType

from sapnhap.datasets import (
    accounts,
    document_steps,
    documents,
    dossier_steps,
    dossiers,
    households,
    indicator_values,
    mail_directory,
    portal_pages,
    residents,
)
from sapnhap.datasets.accounts import ACCOUNT_STATUSES, ACCOUNTS
from sapnhap.datasets.document_steps import DOCUMENT_STEPS
from sapnhap.datasets.documents import DOCUMENT_DIRECTIONS, DOCUMENT_STATUSES, DOCUMENTS, SECURITY_LEVELS
from sapnhap.datasets.dossier_steps import DOSSIER_STEPS
from sapnhap.datasets.dossiers import DOSSIER_STATUSES, DOSSIERS
from sapnhap.datasets.households import HOUSEHOLDS
from sapnhap.datasets.indicator_values import INDICATOR_VALUES
from sapnhap.datasets.mail_directory import MAIL_DIRECTORY
from sapnhap.datasets.portal_pages import PAGE_KINDS, PAGE_STATUSES, PORTAL_PAGES
from sapnhap.datasets.residents import RESIDENTS
from sapnhap.datasets.schema import UNIT_LEVELS, Column, ColumnType, Dataset, agency_columns

# The registry: every dataset's file, in the platform's order.
DATASET_FILES: tuple[ModuleType, ...] = (
    dossiers, dossier_steps, residents, households, accounts, mail_directory, documents, document_steps,
    indicator_values, portal_pages,
)

DATASETS: dict[str, Dataset] = {f.DATASET.name: f.DATASET for f in DATASET_FILES}
_FILES: dict[str, ModuleType] = {f.DATASET.name: f for f in DATASET_FILES}


def get_dataset(name: str) -> Dataset:
    """Return the canonical dataset called ``name`` or raise a clear error."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def dataset_file(name: str) -> ModuleType:
    """The module of dataset ``name`` (its schema and its checks)."""
    get_dataset(name)
    return _FILES[name]


__all__ = [
    "ACCOUNTS",
    "ACCOUNT_STATUSES",
    "DATASETS",
    "DATASET_FILES",
    "DOCUMENTS",
    "DOCUMENT_DIRECTIONS",
    "DOCUMENT_STATUSES",
    "DOCUMENT_STEPS",
    "DOSSIERS",
    "DOSSIER_STATUSES",
    "DOSSIER_STEPS",
    "HOUSEHOLDS",
    "INDICATOR_VALUES",
    "MAIL_DIRECTORY",
    "PAGE_KINDS",
    "PAGE_STATUSES",
    "PORTAL_PAGES",
    "RESIDENTS",
    "SECURITY_LEVELS",
    "UNIT_LEVELS",
    "Column",
    "ColumnType",
    "Dataset",
    "agency_columns",
    "dataset_file",
    "get_dataset",
]
