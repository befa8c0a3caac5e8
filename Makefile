# Every target bootstraps .venv on a fresh machine that has only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test conformance demo bench lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q gembulk >/dev/null  # an editable install compiles nothing itself
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

# The suite runs in TEST_WORKERS xdist workers: 4 on the 2-core machine it must fit in 5 minutes on
# (measured: 2 workers 231 s, 4 workers 200-222 s; many tests wait on processes and the fake). Tests marked
# `timing` run at the end, apart from the others, two at a time (timing(alone=True): alone). T=pattern runs the matching tests in
# one process.
TEST_WORKERS ?= 4

test: $(STAMP)
	$(BIN)/python -m pytest $(if $(T),-x -k $(T),-n $(TEST_WORKERS)) $(PYTEST_ARGS)

# The fake against other clients (other google-genai versions and @google/genai, installed into .conformance/),
# and gembulk's own SDK-facing tests under the lowest google-genai pyproject.toml allows (--sdk-floor).
conformance: $(STAMP)
	$(BIN)/python -m pytest tests/conformance -rs --sdk-floor --other-clients $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python samples/demo.py

bench: $(STAMP)
	$(BIN)/python -m compileall -q gembulk bench >/dev/null
	$(BIN)/python -m bench $(BENCH)

lint: $(STAMP)
	$(BIN)/ruff check gembulk tests bench samples
	$(BIN)/ruff format --check gembulk tests bench samples

fmt: $(STAMP)
	$(BIN)/ruff format gembulk tests bench samples
	$(BIN)/ruff check --fix gembulk tests bench samples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .conformance
