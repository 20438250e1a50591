"""``python -m sapnhap_dev``: the demo and the Airflow UI on embedded services (see :mod:`sapnhap_dev.runner`)."""

import sys

from sapnhap_dev.runner import main

sys.exit(main())
