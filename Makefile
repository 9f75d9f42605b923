# runstream developer entry points. `make test` is what CI runs (through .ci/run).
PYTHON ?= python3
RUNSTREAM ?= $(PYTHON) -m runstream.cli

.PHONY: help install install-ci stack down demo lint test

help:
	@echo "make install   install runstream and its dev tools (editable)"
	@echo "make stack     start the local stack (Kafka, PostgreSQL, Prometheus, Alertmanager)"
	@echo "make down      stop the local stack"
	@echo "make demo      stack + examples/train.py, then where to look"
	@echo "make lint      ruff check, ruff format --check, mypy --strict"
	@echo "make test      install (with torch for the DDP example), stack, lint, pytest"

install:
	$(PYTHON) -m pip install -e '.[dev]'

install-ci:
	$(PYTHON) -m pip install -e '.[dev,ddp]'

stack:
	$(RUNSTREAM) stack up

down:
	$(RUNSTREAM) stack down

demo: install stack
	$(PYTHON) examples/train.py
	@eval "$$($(RUNSTREAM) stack env)"; \
	echo; \
	echo "Live curves:  $$RUNSTREAM_PROMETHEUS_URL/graph?g0.expr=runstream_metric_value&g0.tab=0&g0.range_input=15m"; \
	echo "Every point:  psql '$$RUNSTREAM_DATABASE_READ_URL'"; \
	echo "              e.g.  SELECT run_id, name, step, value FROM metrics ORDER BY time DESC LIMIT 20;"; \
	echo "Stack status: $(RUNSTREAM) stack status"

lint:
	ruff check .
	ruff format --check .
	$(PYTHON) tools/typecheck.py

test: install-ci stack lint
	$(PYTHON) -m pytest
