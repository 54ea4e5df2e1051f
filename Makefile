# tilltap: the commands a person (and CI) uses. Every target first runs scripts/bootstrap.sh,
# which makes the machine ready (Debian packages, .venv, node_modules) and is quick when it is.
#
#   make demo [ARGS=...]          the demo (tools/cli.py)
#   make test [PYTEST_ARGS=... TEST_WORKERS=N]   lint, then the whole test suite
#   make lint                     ruff + mypy (CPython, then MicroPython's esp32 and rp2 stubs)
#   make bench [QUICK=1]          the benchmarks
#   make heapday [QUICK=1]        10,000 sales on MicroPython: free heap and its drift
#   make fuzz [MESSAGES=N SEED=S] a fuzz campaign: 100,000 hostile messages by default
#   make gauntlet [SEED=S KILLS=N] real processes through seeded faults (not in `make test`)
#   make clean / make distclean   remove caches / also .venv and node_modules

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test lint bench heapday fuzz gauntlet clean distclean

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@$(BIN)/tilltap demo $(ARGS)

# The tests run on TEST_WORKERS processes side by side (pytest-xdist; tests/conftest.py says
# how they are grouped, tests/support/postgres.py why each worker has its own PostgreSQL):
# they mostly wait on brokers, servers and MicroPython. TEST_WORKERS=0 runs them in this one
# process.
# pytest exits 5 when it collects no test: non-zero, so the target fails, as it should.
TEST_WORKERS ?= 4
TEST_WORKERS_ARGS := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))
test: lint
	$(BIN)/python -m pytest $(TEST_WORKERS_ARGS) $(PYTEST_ARGS)

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/mypy
	bash scripts/lint_micropython.sh

bench: bootstrap
	$(BIN)/tilltap bench $(if $(QUICK),--quick,) $(ARGS)

# The long day of tools/bench/firmware_heap_day.py (also in `make bench`); exit 1 if the live
# heap drifted. A 2,000-sale day runs in `make test` (tests/e2e/test_micropython_heap_day.py).
heapday: bootstrap
	$(BIN)/python -m tools.bench.firmware_heap_day $(if $(QUICK),--quick,)

# The short campaign (3,000 messages) runs in `make test` (tests/e2e/test_fuzz.py).
fuzz: bootstrap
	$(BIN)/tilltap fuzz --messages $(or $(MESSAGES),100000) --seed $(or $(SEED),2026) $(ARGS)

# 20 gateway kills and every other fault, the ledger on PostgreSQL; exit 1 on anything lost,
# doubled, phantom, an unbalanced book or a hold left open. A short variant runs in
# `make test` (tests/e2e/test_gauntlet.py).
gauntlet: bootstrap
	$(BIN)/tilltap gauntlet --seed $(or $(SEED),1) --gateway-kills $(or $(KILLS),20) $(ARGS)

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./node_modules -prune -o -path ./$(VENV) -prune -o \
		\( -name __pycache__ -o -name '*.mpy' \) -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
