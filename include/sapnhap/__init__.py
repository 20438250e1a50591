"""sapnhap: consolidating legacy district/commune systems into the provincial data platform.

The importable package behind the DAGs: reference data and crosswalk, extract, transform,
quality, backup, load and reports, as pure typed functions testable without Airflow.
"""

__version__ = "0.1.0"

# Legacy Vietnamese encodings ("tcvn3", "vni") usable by name wherever the package is imported.
from sapnhap import codecs_vn as _codecs_vn  # noqa: E402, F401
