# make test: install everything from nothing, start PostgreSQL and S3 (moto), lint,
#            type check and run every test, then stop the services.
# make demo: create a workspace and walk through what Conveyor does so far.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: install test demo lint typecheck services-up services-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: install
	scripts/test.sh

demo: install
	scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

typecheck: install
	$(VENV)/bin/mypy

services-up: install
	scripts/services.sh start

services-down:
	scripts/services.sh stop

clean: services-down
	rm -rf $(VENV) .services demo-workspace
