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

.PHONY: run test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/paramact models fetch $(MODEL)
	$(BIN)/paramact findings --model $(MODEL) --samples $(SAMPLES) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR),--datasets pydoc,pycode,humaneval) --out $(RUN_DIR)/findings
	$(if $(DATA_DIR),$(BIN)/paramact sts --model $(MODEL) --dataset stsb --split dev --pairs $(PAIRS) \
		--data-dir $(DATA_DIR) --out $(RUN_DIR)/sts,@echo "no ../shared/data: STS-B skipped")
	$(BIN)/paramact report $(RUN_DIR)

test: install
	$(BIN)/paramact --quiet models fetch smollm2-135m
	$(BIN)/pytest -q

bench: install
	$(BIN)/paramact --quiet models fetch smollm2-135m
	$(BIN)/python benchmarks/bench_engine.py --json benchmarks/last_run.json

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
