# runstream developer entry points. `make test` is what CI runs (through .ci/run).
#
# Every target runs in a virtual environment inside the checkout (.venv, ignored by git) that
# holds only what pyproject.toml declares: nothing installed by hand on the machine is visible in
# it, so a missing declaration fails here as it would on a new machine.
BASE_PYTHON ?= python3
VENV ?= .venv
override PYTHON := $(VENV)/bin/python
override RUNSTREAM := $(PYTHON) -m runstream.cli

.PHONY: help venv install install-ci stack down demo lint test

help:
	@echo "make install   the virtual environment $(VENV) with runstream and its dev tools (editable)"
	@echo "make stack     start the local stack (Kafka, PostgreSQL, Prometheus, Alertmanager)"
	@echo "make down      stop the local stack"
	@echo "make demo      stack + examples/train.py, then where to look"
	@echo "make lint      ruff check, ruff format --check, mypy --strict"
	@echo "make test      install (with torch for the DDP example), stack, lint, pytest (2 workers, then the serial tests)"

# The environment never sees the system's site-packages (venv's default); `--upgrade-deps` gives
# it a current pip. Made once, reused after.
$(PYTHON):
	$(BASE_PYTHON) -m venv --upgrade-deps $(VENV)

venv: $(PYTHON)

install: venv
	$(PYTHON) -m pip install -e '.[dev]'

install-ci: venv
	$(PYTHON) -m pip install -e '.[dev,ddp,integrations]'

stack: venv
	$(RUNSTREAM) stack up

down: venv
	$(RUNSTREAM) stack down

demo: install stack
	$(PYTHON) examples/train.py
	@eval "$$($(RUNSTREAM) stack env)"; \
	echo; \
	echo "Live curves:  $$RUNSTREAM_PROMETHEUS_URL/graph?g0.expr=runstream_metric_value&g0.tab=0&g0.range_input=15m"; \
	echo "Every point:  psql '$$RUNSTREAM_DATABASE_READ_URL'"; \
	echo "              e.g.  SELECT run_id, name, step, value FROM metrics ORDER BY time DESC LIMIT 20;"; \
	echo "Stack status: $(RUNSTREAM) stack status"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PYTHON) tools/typecheck.py

# Two phases: every test but the `serial` ones on TEST_WORKERS processes (a file's tests stay in
# one process, so a module's own secure stack or cluster is made once), then the `serial` tests
# (they stop a service of the shared stack) alone. Both run even when the first fails.
TEST_WORKERS ?= 2

test: install-ci stack lint
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"; parallel=$$?; \
	$(PYTHON) -m pytest -m serial; alone=$$?; \
	test $$parallel -eq 0 && test $$alone -eq 0
