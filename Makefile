# The project's entry points. Every target creates .venv on first use and
# reinstalls only when the package metadata changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= test,bench,ann

.PHONY: install test test-coco lint format train bench bench-pml compare clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --maxschedchunk=1 -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

train: $(STAMP)
	$(PY) train.py --config=configs/default.py --workdir=runs/default

# The benchmark suite (tables recorded in benchmarks/README.md).
bench: $(STAMP)
	$(PY) -m benchmarks.losses
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.memory
	$(PY) -m benchmarks.precision
	$(PY) -m benchmarks.small_map_conv
	$(PY) -m benchmarks.pairwise_passes
	$(PY) -m benchmarks.startup

# Every loss against softmax on digits, 3 seeds (results/digits.md);
# QUICK=1: a smoke test of the comparison machinery, not a result (one seed,
# 8 epochs, no retrieval; written under runs/compare_quick).
JOBS ?= 2
COMPARE_MODE := $(if $(QUICK),:quick,)
COMPARE_DIR := runs/compare$(if $(QUICK),_quick,)
compare: $(STAMP)
	$(PY) -m benchmarks.compare --jobs=$(JOBS) \
	  --config=configs/compare/digits.py$(COMPARE_MODE) \
	  --workdir=$(COMPARE_DIR)

# The comparison with pytorch-metric-learning needs torch and torchvision
# (6.5 GB: the matching pair pip finds is a CUDA build), so it gets its own
# venv and never enters .venv (the one CI installs).
PML_VENV := .venv-pml
PML_PY := $(PML_VENV)/bin/python
PML_STAMP := $(PML_VENV)/.installed-stamp

$(PML_STAMP): setup.cfg pyproject.toml
	test -x $(PML_PY) || $(PYTHON) -m venv $(PML_VENV)
	$(PML_PY) -m pip install --quiet --upgrade pip
	$(PML_PY) -m pip install --quiet -e '.[bench,pml]'
	touch $(PML_STAMP)

bench-pml: $(PML_STAMP)
	$(PML_PY) -m benchmarks.compare_pml

# A JPEG folder's input pipeline against torchvision's ImageFolder and
# DataLoader, training and evaluation transforms, 1 and 2 workers
# (benchmarks/README.md); torchvision comes from the pml venv.
.PHONY: bench-jpeg
bench-jpeg: $(STAMP) $(PML_STAMP)
	$(PY) -m benchmarks.jpeg_pipeline --discfeat_python=$(PY) \
	  --torchvision_python=$(PML_PY)

# ImageNet weights (models/pretrained.py): torchvision's and timm's ResNets
# and ours loaded from the same safetensors file compute the same features
# (benchmarks/README.md); torchvision and timm come with the pml extra.
.PHONY: bench-pretrained
bench-pretrained: $(PML_STAMP)
	$(PML_PY) -m benchmarks.pretrained_parity
	$(PML_PY) -m benchmarks.iresnet_parity

# The tests that need TensorFlow (TFDS's coco builder; marked `tensorflow`,
# they skip in .venv) run in their own venv: .venv's extras plus coco (every
# test module must import to be selected by marker), so that .venv stays
# without TensorFlow. The import check fails loudly instead of letting the
# tests skip.
COCO_VENV := .venv-coco
COCO_PY := $(COCO_VENV)/bin/python
COCO_STAMP := $(COCO_VENV)/.installed-stamp

$(COCO_STAMP): setup.cfg pyproject.toml
	test -x $(COCO_PY) || $(PYTHON) -m venv $(COCO_VENV)
	$(COCO_PY) -m pip install --quiet --upgrade pip
	$(COCO_PY) -m pip install --quiet -e '.[$(EXTRAS),coco]'
	touch $(COCO_STAMP)

test-coco: $(COCO_STAMP)
	$(COCO_PY) -c 'import tensorflow'
	$(COCO_PY) -m pytest -n 0 -q -m tensorflow

clean:
	rm -rf $(VENV) $(PML_VENV) $(COCO_VENV) *.egg-info .pytest_cache .ruff_cache \
	  .jax_cache
