# The two commands of the README: `make book` and `make test`. Each sets up .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
# Training runs in parallel processes of one thread each (default: the number of cores).
JOBS ?=
JOBS_ARG := $(if $(JOBS),--jobs $(JOBS),)
STAMP := $(VENV)/.installed

# Data: $LOSSDECAY_DATA if set, else ../shared/data when this checkout has it beside it.
ifeq ($(origin LOSSDECAY_DATA), undefined)
  ifneq ($(wildcard ../shared/data),)
    export LOSSDECAY_DATA := $(abspath ../shared/data)
  endif
endif
# Tests and CI run the chapters on one thread per process: deterministic and kind to 2-core machines.
# Their training runs keep records under _build/, so tests always train afresh and never touch records/.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 LOSSDECAY_RECORDS=$(CURDIR)/_build/test-records

.PHONY: setup book test unit clean sync records gpu-carry

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

## make book: execute every chapter with papermill (PROFILE=auto|smoke|cpu|gpu|paper) and build _build/html.
book: $(STAMP)
	$(PY) -m lossdecay_lib.chapters run --profile $(PROFILE) --out _build/executed $(JOBS_ARG)
	$(PY) -m lossdecay_lib.chapters build --executed _build/executed
	@echo "open _build/html/index.html"

## make records PROFILE=cpu: train every missing run of the classification chapters, in parallel, resuming
## interrupted runs (COMMIT=1: git-commit each finished record as it lands).
records: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m lossdecay_lib.campaign --profile $(if $(filter auto,$(PROFILE)),cpu,$(PROFILE)) \
		$(JOBS_ARG) $(if $(COMMIT),--commit,)

## make gpu-carry: what a lent GPU's call of benchmarks/gpu_book.sh carries (that machine has no internet and
## no ../shared): the CIFAR-10 and facades archives in .device-data/, the schedulefree wheel in .whl/, both
## git-ignored (.git/info/exclude). README, "Beyond one machine", gives the call.
gpu-carry:
	mkdir -p .device-data .whl
	cp $(LOSSDECAY_DATA)/cifar10-jpeg.tar.gz $(LOSSDECAY_DATA)/facades.tar.gz .device-data/
	$(PYTHON) -m pip download -q --no-deps -d .whl $$(grep '^schedulefree==' requirements.txt)
	exclude=$$(git rev-parse --git-path info/exclude); for d in /.device-data/ /.whl/; do \
		grep -qxsF $$d $$exclude || echo $$d >> $$exclude; done
	du -sh .device-data .whl

## make test: unit tests, every chapter executed in the smoke profile, the book built from it, and nbval.
test: $(STAMP)
	rm -rf _build/test-records _build/test-records-nbval
	$(TEST_ENV) $(PY) -m lossdecay_lib.chapters run --profile smoke --out _build/test
	$(TEST_ENV) $(PY) -m lossdecay_lib.chapters build --executed _build/test --out _build/test-site
	# nbval re-executes the chapters with an empty record store: training cells it compares are retrained.
	LOSSDECAY_TEST_BOOK=_build/test-site/_build/html $(TEST_ENV) LOSSDECAY_RECORDS=$(CURDIR)/_build/test-records-nbval \
		$(PY) -m pytest tests _build/test/*.ipynb \
		--nbval-lax --nbval-current-env -q

unit: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest tests -q

## make sync: bring each paired notebook in book/ up to date with its .py source.
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync book/*.py

clean:
	rm -rf _build
