"""``python -m twin_ext <command>``: see `twin_ext.cli`."""

from .cli import main

raise SystemExit(main())
