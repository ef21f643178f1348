# Developer and CI entry points. The virtual environment is a stamp target so that
# `make test` on a fresh clone installs exactly the pinned versions first.
# The lock is installed before the editable package, which uses --no-deps so pip never
# resolves torch on its own (an unpinned torch would pull a multi-GB CUDA build).

VENV ?= .venv
PYTHON3 ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv lint test demo bench bench-deps

venv: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements-lock.txt
	$(VENV)/bin/pip install --no-deps -e .
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) examples/demo.py

# The peers the benchmarks compare against (llama.cpp, ONNX Runtime); not needed by the package or tests.
bench-deps: $(STAMP) requirements-bench.txt
	$(VENV)/bin/pip install -r requirements-bench.txt

bench: bench-deps
	$(PY) -m benchmarks.run
