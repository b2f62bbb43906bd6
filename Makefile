# The two commands of the README: `make demo` and `make test`. Both set up
# whatever is missing first (scripts/setup.sh, idempotent and quick to re-run).
VENV := .venv
PY := $(VENV)/bin/python
GMEMTRACE := $(VENV)/bin/gmemtrace

.PHONY: setup demo test lint typecheck bench notebook lab screenshot clean

setup:
	@scripts/setup.sh

demo: setup
	$(GMEMTRACE) demo

lint: setup
	$(VENV)/bin/ruff check gmemtrace tests benchmarks lab/tests scripts
	$(VENV)/bin/ruff format --check gmemtrace tests benchmarks lab/tests scripts

typecheck: setup
	$(VENV)/bin/mypy gmemtrace

test: lint typecheck
	@scripts/setup.sh --test
	$(PY) -m pytest

notebook: setup
	$(PY) -m pip install -q --disable-pip-version-check jupyterlab
	$(VENV)/bin/jupyter lab --allow-root notebooks

# The tools the benchmark compares against (Debian's bpftrace and perf), if missing.
bench: setup
	@command -v bpftrace >/dev/null && command -v perf >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q bpftrace linux-perf >/dev/null
	$(PY) -m benchmarks

# The README's picture of the live view (160x50, during the demo's workload): an SVG
# exported by Textual, regenerated here rather than drawn by hand.
screenshot: setup
	$(PY) scripts/screenshot.py docs/live-view.svg

# The lab's suite on each lab kernel, booted under QEMU (lab/run fetches and builds
# what it needs on first use, into ~/.cache/gmemtrace/lab; the in-place conversion
# kernel is built once, about half an hour on 2 cores, and boots twice: in place, and
# with the per-VM attributes). A kernel whose base apt no longer offers is skipped with
# one line (lab/run's exit status 77); any other failure stops here.
LAB_KERNELS := debian-6.12 debian-6.12-sw inplace-7.2 inplace-7.2-vm
lab: setup
	@for kernel in $(LAB_KERNELS); do \
		echo "lab: $$kernel"; \
		lab/run --kernel $$kernel --timeout 2400 -- \
			$(PY) -m pytest -p no:cacheprovider --timeout=1200 -q lab/tests; \
		status=$$?; \
		if [ $$status -eq 77 ]; then echo "lab: $$kernel skipped: its kernel cannot be had"; continue; fi; \
		[ $$status -eq 0 ] || exit $$status; \
	done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
