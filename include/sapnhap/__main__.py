"""``python -m sapnhap``: migrate, restore, pools on a deployed platform (see :mod:`sapnhap.runner`)."""

import sys

from sapnhap.runner import main

sys.exit(main())
