# Set-up and the two everyday jobs. `make demo` and `make test` each build the virtual
# environment first if needed, so they work on a fresh machine.
#
# PyTorch: the CPU build 2.13.0 by default. GPU users pick their own build, e.g.
#   make test TORCH_SPEC="torch==2.5.1" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu121"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

$(BIN)/.medsight-installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, alone: resolving the project's `torch>=` first would pull a multi-GB CUDA build.
	$(BIN)/pip install --disable-pip-version-check "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(BIN)/pip install --disable-pip-version-check -e ".[dev]" "$(TORCH_SPEC)"
	touch $@

install: $(BIN)/.medsight-installed

demo: install
	$(BIN)/medsight demo --out demo-out

# On a CPU with native bf16, `auto` trains in bf16; the precision-sensitive tests then run a
# second time in fp32, the only fast path on AVX2-only CPUs, so both kinds stay green.
test: install
	$(BIN)/python -m pytest -q
	if $(BIN)/python -c "import sys; from medsight.runtime import cpu_has_native_bf16 as f; sys.exit(not f())"; then \
		$(BIN)/python -m pytest -q -m precision --precision fp32 -p no:cacheprovider; fi

bench: install
	$(BIN)/python bench/medmnist.py ../shared/data/breastmnist/breastmnist.npz

clean:
	rm -rf $(VENV) demo-out .pytest_cache
