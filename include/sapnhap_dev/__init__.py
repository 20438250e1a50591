"""Development tools, outside the package the Airflow image runs (``sapnhap``).

- :mod:`sapnhap_dev.demo`: the demo world (a generated province of legacy systems, invented people);
- :mod:`sapnhap_dev.embedded`: the embedded services (pgserver PostgreSQL, moto S3, an SMTP sink,
  Airflow on SQLite) that ``make demo``, the tests and the bench run on;
- :mod:`sapnhap_dev.runner`: ``python -m sapnhap_dev demo|ui`` (``make demo``, ``make airflow-ui``).
"""
