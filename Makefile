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

# one pytest-xdist worker per core this process may use (at most 8): about 12 minutes on 2
# cores, against 20 in one process
test: $(PY)
	scripts/install-test-deps
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pytest -n "$$($(PY) -c 'import os; print(min(len(os.sched_getaffinity(0)), 8))')"

bench: $(PY)
	$(PY) -m pip install --quiet -e .
	$(PY) bench/dispatch.py
