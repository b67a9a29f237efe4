# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext <command>``: see `twin_ext.cli`."""

from .cli import main

raise SystemExit(main())
