"""``python -m service.cli``: the same as the ``rfr`` console script."""

from service.cli import main

raise SystemExit(main())
