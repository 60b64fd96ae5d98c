# Two commands a new user needs: `make demo` and `make test`. Both create .venv when missing and
# install the project with pinned, known-good versions (requirements/constraints.txt).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[train,viz,sweep,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m slac_train.pipeline_demo --out out/demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/env_speed.py
	$(PY) benchmarks/update_speed.py
	$(PY) benchmarks/policy_latency.py
	$(PY) benchmarks/frame_latency.py
	$(PY) benchmarks/bus_speed.py
	$(PY) benchmarks/loop_timing.py
	$(PY) benchmarks/soak.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf out .pytest_cache
