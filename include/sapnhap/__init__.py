"""sapnhap: consolidating legacy district/commune systems into the provincial data platform.

The importable package behind the DAGs: reference data and crosswalk, extract, transform,
quality, backup, load and reports, as pure typed functions testable without Airflow.
"""

__version__ = "0.1.0"
