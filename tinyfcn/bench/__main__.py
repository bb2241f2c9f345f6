"""``python -m tinyfcn.bench ...``: see ``tinyfcn.bench.command``."""

import sys

from . import main

sys.exit(main())
