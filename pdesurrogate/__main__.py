"""``python -m pdesurrogate``: the command line."""

import sys

from pdesurrogate.cli import main

sys.exit(main())
