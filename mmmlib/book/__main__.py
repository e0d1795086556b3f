"""``python -m mmmlib.book``: see :mod:`mmmlib.book.runner`."""

import sys

from mmmlib.book.runner import main

sys.exit(main())
