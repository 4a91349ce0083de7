# Two commands do all set-up on a fresh machine with Python 3.11, pip and make:
#   make demo   -> creates .venv, installs WeakSTIL, runs the main job on a synthetic cohort
#   make test   -> creates .venv, installs WeakSTIL with test tools, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.weakstil-installed
DEMO   ?= demo_out
# the SLURM test's scratch folder (its own, so no other pytest session cleans it away mid-run)
SLURM_TMP ?= /tmp/weakstil-test-slurm
# test processes (pytest-xdist); a module's tests stay in one process so its fixtures are built once
TEST_WORKERS ?= 2
# threads per test process (torch/OpenMP, BLAS): the workers already fill the cores, and two processes
# of two OpenMP threads each on 2 CPUs spin-wait for descheduled threads (test_mil.py alone: 58 s of
# CPU with 2 threads, 32 s with 1). Commands that plan their threads still set them explicitly.
TEST_THREADS ?= 1

.PHONY: install test test-slurm demo bench clean gpu-wheels

$(STAMP): pyproject.toml plugins/napari_weakstil/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e plugins/napari_weakstil
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) OPENBLAS_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) \
	  $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=15

# The cohort workflow through sbatch on a real SLURM (root; a fresh Debian 12 machine is fine):
# pipelines/slurm/setup_localhost.sh sets up a single-node cluster on this machine first.
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -s -m slurm --basetemp=$(SLURM_TMP) tests/slurm

demo: $(STAMP)
	$(BIN)/weakstil demo --out $(DEMO)
	$(BIN)/weakstil tile tests/data/CMU-1-Small-Region.svs --out $(DEMO)/tiles
	@echo "Tile overlay of the real CMU slide: $(DEMO)/tiles/CMU-1-Small-Region_tiles.png"

bench: $(STAMP)
	$(BIN)/python benchmarks/tiling_speed.py

# Wheels benchmarks/gpu_run.sh installs on the GPU machine (which has torch but not these; imagecodecs is abi3, one wheel),
# for CPython 3.11-3.12 on manylinux x86_64 (tifffile 2026 needs 3.11); the versions tested with benchmarks/gpu_check.py.
GPU_WHEELS := openslide-python==1.4.7 openslide-bin==4.0.1.2 simplejpeg==1.9.0 tifffile==2026.3.3 imagecodecs==2026.3.6 torchstain==1.4.1
gpu-wheels: $(STAMP)
	for v in 3.11 3.12; do \
	  $(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version $$v --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .whl $(GPU_WHEELS) || exit 1; \
	done
	@du -sh .whl

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
