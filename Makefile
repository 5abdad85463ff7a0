# Two entry points (see README): `make demo` runs the main job on the embedded default scene,
# `make test` runs the test suite. Both create or reuse .venv with pinned dependencies first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.neumap-setup-stamp

.PHONY: demo test venv bench lint clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt setup.py setup.cfg package.xml tools/setup_env.sh tools/build_tf2_msgs.sh
	./tools/setup_env.sh $(VENV)

demo: $(STAMP)
	./tools/run_in_env.sh $(VENV) neumap demo

test: $(STAMP)
	./tools/run_in_env.sh $(VENV) python -m pytest test

bench: $(STAMP)
	./tools/run_in_env.sh $(VENV) python bench/run_benchmarks.py

lint: $(STAMP)
	./tools/run_in_env.sh $(VENV) python -m pytest test -m linter

clean:
	rm -rf $(VENV) build install log .pytest_cache
