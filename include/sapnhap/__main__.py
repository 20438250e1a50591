"""``python -m sapnhap``: the data team's command line (see :mod:`sapnhap.runner`)."""

import sys

from sapnhap.runner import main

sys.exit(main())
