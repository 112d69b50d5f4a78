"""``python -m hiem.cli``: the ``hiem`` command."""

from hiem.cli.main import main

raise SystemExit(main())
