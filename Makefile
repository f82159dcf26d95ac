# The two commands: `make sim` (set up, then run the simulated line with its status page)
# and `make test` (set up, then run the tests). `make bench` prints the benchmark tables.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config/wenling-line1.yaml

.PHONY: sim test bench setup clean

sim:
	./scripts/setup.sh
	$(VENV)/bin/sorter sim --config $(CONFIG)

# two passes: what does not drive the line in real time, two at a time (a file's tests stay on
# one worker, so its fixtures start once); then the real-time `line` tests one after the other.
# Both passes always run; the target fails if either failed.
test:
	./scripts/setup.sh test
	$(PY) -m pytest -q -m "not line" -n 2 --dist loadfile; a=$$?; \
	$(PY) -m pytest -q -m line; b=$$?; \
	[ $$a = 0 ] && [ $$b = 0 ]

bench:
	./scripts/setup.sh
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var config/var
