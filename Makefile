# Two commands on a fresh machine (README.md):
#   make lab   installs everything, starts the broker, opens the course in JupyterLab
#   make test  installs everything and runs lint, types, tests, lessons and lab grading
# Both install the pinned versions in constraints.txt into .venv/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP_VERSION := 26.3

.PHONY: help install lab test lint system-deps lock down clean mutate

help:
	@echo "make lab    install, start the broker, open the course in JupyterLab"
	@echo "make test   install, then lint, type-check and run every test"
	@echo "make down   stop the managed broker"
	@echo "make lock   re-resolve constraints.txt from pyproject.toml (an upgrade on purpose)"
	@echo "make mutate optional mutation testing (mutmut) of the fast modules; docs/guarantees.md"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

lab: install
	$(BIN)/eventlab lab

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install system-deps lint
	$(BIN)/python -m pytest

down:
	$(BIN)/eventlab down

# optional, not part of make test: installs mutmut once into .mutmut/ (docs/guarantees.md)
mutate: install
	bash scripts/mutate.sh

lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q "pip==$(PIP_VERSION)"
	# notebook: not a dependency of the kit, but binder/postBuild upgrades Binder's to this pin
	.lock-venv/bin/python -m pip install -q -e ".[dev]" notebook
	{ echo "# Pinned versions for learners and CI: make lab and make test install from this file."; \
	  echo "# Regenerate on purpose with 'make lock', then run 'make test' before committing."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lock-venv

clean:
	-$(BIN)/eventlab down
	rm -rf $(VENV) .eventlab .pytest_cache .mypy_cache .ruff_cache .mutmut
