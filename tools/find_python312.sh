#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Print the path of a working Python 3.12 interpreter (the version Kit 110 / Isaac Sim 6 embed).
# Tries, in order: $PYTHON, python3.12 on PATH (pyenv shims honour the repo's .python-version),
# pyenv's own install folders, and the usual system locations.
set -u
check() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; }
for candidate in ${PYTHON:-} python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
                 /usr/local/bin/python3.12 /usr/bin/python3.12; do
  [ -n "$candidate" ] || continue
  if check "$candidate"; then
    command -v "$candidate" 2>/dev/null || echo "$candidate"
    exit 0
  fi
done
echo "error: no Python 3.12 found; install it (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12" >&2
exit 1
