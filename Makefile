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

.PHONY: install system-packages demo test bench clean

# Debian packages for the service tests: a real PACS (Orthanc + DICOMweb), a real browser and a
# PostgreSQL server for the database tests (tests/store).
# Installed only when missing; `sudo` only when not root. Tests skip if they are absent.
DEBIAN_PACKAGES := orthanc orthanc-dicomweb chromium postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-packages:
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	  fi; \
	fi

$(BIN)/.medsight-installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, alone: resolving the project's `torch>=` first would pull a multi-GB CUDA build.
	$(BIN)/pip install --disable-pip-version-check "$(TORCH_SPEC)" $(PIP_TORCH_ARGS)
	$(BIN)/pip install --disable-pip-version-check -e ".[dev,service,pacs,onnx,openvino,postgres,large,similar]" "$(TORCH_SPEC)"
	touch $@

install: system-packages $(BIN)/.medsight-installed

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
	rm -rf $(VENV) demo-out .pytest_cache test-artifacts
