# Two commands on a fresh machine (README.md):
#   make lab   installs everything, starts the broker, opens the course in JupyterLab
#   make test  installs everything and runs lint, types, tests, lessons and lab grading
# and the edit-test loop (CONTRIBUTING.md):
#   make check lint, types and the fast tests, in under a minute
# Both install the pinned versions in constraints.txt into .venv/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PIP_VERSION := 26.3

.PHONY: help install git-filter lab test check check-unit check-runtime lint system-deps lock down clean mutate

help:
	@echo "make lab    install, start the broker, open the course in JupyterLab"
	@echo "make test   install, then lint, type-check and run every test"
	@echo "make check  lint, type-check and the fast tests (the edit-test loop, < 1 min)"
	@echo "make down   stop the managed broker"
	@echo "make lock   re-resolve constraints.txt from pyproject.toml (an upgrade on purpose)"
	@echo "make mutate optional mutation testing (mutmut) of the fast modules; docs/guarantees.md"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@$(MAKE) --no-print-directory git-filter
	touch $(STAMP)

install: $(STAMP)

# .gitattributes sends notebooks through the "nbstripout" filter; this defines it
# for this clone, so outputs of a lesson run never show in `git status` or a
# commit (the files on disk keep them). --keep-id: cell ids are part of the
# stored lessons. Skipped outside git, and in a linked worktree, whose config is
# shared with the main checkout's.
NBSTRIPOUT := "$(abspath $(BIN))/python" -m nbstripout --keep-id
git-filter:
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "git-filter: not a git checkout; nothing to set"; \
	elif [ "$$(git rev-parse --git-dir)" != "$$(git rev-parse --git-common-dir)" ]; then \
	  echo "git-filter: linked worktree; set the nbstripout filter in the main checkout"; \
	else \
	  git config filter.nbstripout.clean '$(NBSTRIPOUT)' && \
	  git config filter.nbstripout.smudge cat && \
	  git config diff.ipynb.textconv '$(NBSTRIPOUT) -t' && \
	  echo "git-filter: notebooks go through nbstripout in git (outputs stay on disk)"; \
	fi

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

# The fast loop: no lessons (nbval), no browser, Docker, Binder or environment
# checks, no grading, workshop or scenario runs, no test marked slow (chaos
# runs, large data files). Two pytest processes at once: the runtime tests
# mostly wait on the broker and on faults, the others mostly compute.
CHECK_SKIP := browser browser_quiz docker binder environment notebooks \
	lesson_activities grading workshop workshop_room workshop_day scenarios \
	labs labs_pack shop_runtime jupyter
CHECK_RUNTIME := tests/test_consumer.py tests/test_faults.py tests/test_crash.py tests/test_broker.py
CHECK_PYTEST := $(BIN)/python -m pytest -q -m "not slow and not browser"

check: install lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target check-unit check-runtime

check-unit:
	$(CHECK_PYTEST) tests $(foreach f,$(CHECK_SKIP),--ignore=tests/test_$(f).py) \
	  $(foreach f,$(CHECK_RUNTIME),--ignore=$(f))

check-runtime:
	$(CHECK_PYTEST) $(CHECK_RUNTIME)

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
