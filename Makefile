# Two entry points for a fresh machine with only Python and make:
#   make demo   set up .venv and verify a shipped instance
#   make test   set up .venv and run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned first: on our machines this is a local CPU wheel; a looser spec would pull CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) cli.py verify bench_instances/onnx/digits_mlp.onnx specs/digits_mlp_img386_eps0.08.vnnlib --timeout 60

test: $(STAMP)
	$(PY) -m pytest -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) cli.py bench ../shared/vnncomp/instances.csv --timeout-cap 120

clean:
	rm -rf $(VENV) .pytest_cache
