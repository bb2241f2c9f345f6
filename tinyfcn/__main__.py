"""``python -m tinyfcn`` is the ``tinyfcn`` command."""

from .cli import main

raise SystemExit(main())
