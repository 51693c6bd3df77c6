# `make demo` and `make test` (README, Quickstart) each create .venv with a Python >= 3.12,
# install flowjit into it (editable) with the extra they need, and run. `make test` also
# installs what the tests need outside Python (scripts/install-test-deps: Chromium).
VENV := .venv
PY := $(VENV)/bin/python

$(PY):
	"$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

.PHONY: demo test bench
demo: $(PY)
	$(PY) -m pip install --quiet -e '.[examples]'
	$(PY) examples/quickstart.py

test: $(PY)
	scripts/install-test-deps
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pytest

bench: $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) bench/dispatch.py
