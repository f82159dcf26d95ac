# The two commands: `make sim` (set up, then run the simulated line with its status page)
# and `make test` (set up, then run the tests). `make bench` prints the benchmark tables.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config/wenling-line1.yaml

.PHONY: sim test bench setup clean

sim:
	./scripts/setup.sh
	$(VENV)/bin/sorter sim --config $(CONFIG)

test:
	./scripts/setup.sh test
	$(PY) -m pytest -q

bench:
	./scripts/setup.sh
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var config/var
