# SPDX-License-Identifier: Apache-2.0
# twin_ext — the two entry points a new machine needs:
#   make demo   the main job: embedded broker + emulated robot + headless twin, outputs in out/demo/
#   make test   the whole suite (Mosquitto and the Kit kernel are real; see .ci/run for system packages)
# Both bootstrap .venv with python3.12 and install what they need; reruns skip finished steps.

SHELL := /bin/bash
PYTHON ?= $(shell ./tools/find_python312.sh)
VENV := .venv
TOOLS_VENV := .venv-tools
PY := $(VENV)/bin/python
# Warp's kernel cache and other build caches live in one known folder (reused, never required).
export TWIN_EXT_CACHE_DIR ?= $(CURDIR)/.cache
export PIP_DISABLE_PIP_VERSION_CHECK := 1
ARGS ?=

.PHONY: demo test lint bench usd venv tools clean help

help:
	@echo "make demo   # run the live twin end to end on the embedded default (outputs in out/demo/)"
	@echo "make test   # run the whole test suite"
	@echo "make lint   # ruff lint + format check (the first step of make test)"
	@echo "make bench  # run the benchmarks (what-if, telemetry, fidelity)"
	@echo "make usd    # rebuild usd/ from data/robots/ (conversion tools in $(TOOLS_VENV))"

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "python3.12 not found (see tools/find_python312.sh)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# MJCF -> USD converter; kept out of the runtime venv because it pins an older MuJoCo and brings
# usd-exchange, which breaks usd-core's pxr in the same environment (docs/design.md).
$(TOOLS_VENV)/.installed: tools/requirements-usd-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r tools/requirements-usd-tools.txt
	touch $@

venv: $(VENV)/.installed
tools: $(TOOLS_VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m twin_ext demo $(ARGS)

# ruff (lint + format check) gates the suite: a dirty tree fails `make test` before pytest starts.
test: lint $(TOOLS_VENV)/.installed
	$(PY) -m pytest $(ARGS)

# The lint gate alone; to fix: .venv/bin/ruff check --fix . && .venv/bin/ruff format . (then review the diff).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed
	$(PY) -m twin_ext.bench all $(ARGS)

usd: $(TOOLS_VENV)/.installed
	$(TOOLS_VENV)/bin/python tools/build_usd.py

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .cache out .pytest_cache
