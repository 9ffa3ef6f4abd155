# voicebot developer entry points. `make run` and `make test` first install whatever is missing,
# so a fresh Debian 12 machine needs nothing but make; when everything is present that step is a
# few `command -v` checks and one up-to-date stamp file.
#
# Redis started by `make run` is daemonized and keeps running after you stop the app (Ctrl-C
# stops only the honcho processes), so the next `make run` finds it and the data under .run/
# survives. Stop it with `make redis-stop`; `make clean` does that too.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

VENV := .venv
RUN_DIR := $(CURDIR)/.run
REDIS_PORT := 6379
PYTEST_ARGS ?=
# Test processes: the suite mostly waits on calls played in real time, so three share two cores well.
PYTEST_WORKERS ?= 3
# Reinstall the Python side only when pyproject.toml changes (the stamp lives in the venv, so
# removing the venv also forces a reinstall).
INSTALL_STAMP := $(VENV)/.voicebot-installed

# apt-get needs root; use sudo only when we are not root already (CI and containers are root).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Prints the first Python >= 3.11 that can make a venv; fails if there is none. Debian ships
# ensurepip only in python3-venv, so importing it tells whether `-m venv` will work.
FIND_PYTHON := for py in python3.11 python3; do \
	if command -v $$py >/dev/null 2>&1 && \
	   $$py -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
		command -v $$py; exit 0; \
	fi; \
done; exit 1

.PHONY: help install system-packages run test redis-stop clean

help:
	@echo "make run         install what is missing, start Redis (unless REDIS_URL is set) and run"
	echo "                 the Procfile (web on PORT, default 5000, + RQ worker) in the foreground;"
	echo "                 without TWILIO_AUTH_TOKEN in development mode (127.0.0.1 only, token in .run/);"
	echo "                 loads the demo customers (flows/customers-demo.csv) into the directory first"
	echo "                 without VOICEBOT_HASH_SALT with a local salt made once in .run/hash-salt"
	echo "make test        install what is missing, then run pytest in PYTEST_WORKERS (3) processes (extra arguments: PYTEST_ARGS=...)"
	echo "make install     only install: system packages, .venv and the project in it"
	echo "make redis-stop  stop the Redis that 'make run' started"
	echo "make clean       stop that Redis and remove .venv and .run"

install: $(INSTALL_STAMP)

# Checked on every run (it is cheap), so a package removed later is noticed.
system-packages:
	@missing=""
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"
	command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-tools"
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"
	# The agent desk's browser tests drive Debian's Chromium through Playwright (pip), never a download.
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"
	# Call records are tested on a throwaway PostgreSQL server too (Debian's package; never its system cluster).
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing="$$missing postgresql"
	( $(FIND_PYTHON) ) >/dev/null || missing="$$missing python3 python3-venv python3-pip"
	[ -z "$$missing" ] && exit 0
	echo "Installing system packages:$$missing"
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "error: apt-get not found; install these yourself:$$missing" >&2; exit 1
	fi
	if [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null 2>&1; then
		echo "error: not root and no sudo; as root run: apt-get install$$missing" >&2; exit 1
	fi
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

$(INSTALL_STAMP): pyproject.toml | system-packages
	@if ! py=$$( $(FIND_PYTHON) ); then
		echo "error: voicebot needs Python >= 3.11 with the venv module (python3.11 or python3)." >&2
		echo "       On Debian 12: apt-get install python3 python3-venv" >&2
		exit 1
	fi
	if ! $(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
		echo "Creating $(VENV) with $$py ($$($$py --version))"
		rm -rf $(VENV)
		$$py -m venv $(VENV)
	fi
	echo "Installing voicebot and its dev dependencies into $(VENV)"
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

run: install
	@mkdir -p $(RUN_DIR)
	if [ -n "$${REDIS_URL:-}" ]; then
		echo "Using the Redis in REDIS_URL; not starting one."
	elif [ "$$(redis-cli -p $(REDIS_PORT) ping 2>/dev/null)" = PONG ]; then
		echo "Redis already answers on port $(REDIS_PORT); using it."
	else
		echo "Starting redis-server on 127.0.0.1:$(REDIS_PORT) (data, log and pid in .run/)"
		redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --daemonize yes \
			--dir $(RUN_DIR) --logfile $(RUN_DIR)/redis.log --pidfile $(RUN_DIR)/redis.pid
		for _ in $$(seq 50); do
			[ "$$(redis-cli -p $(REDIS_PORT) ping 2>/dev/null)" = PONG ] && break
			sleep 0.1
		done
		if [ "$$(redis-cli -p $(REDIS_PORT) ping 2>/dev/null)" != PONG ]; then
			echo "error: redis-server did not start; last lines of .run/redis.log:" >&2
			tail -n 20 $(RUN_DIR)/redis.log >&2 || true
			exit 1
		fi
	fi
	if [ -z "$${TWILIO_AUTH_TOKEN:-}" ]; then
		# No Twilio credentials: the server runs in development mode (127.0.0.1 only, a random
		# token in .run/dev-auth-token that `voicebot call` picks up). It says so in one line.
		export VOICEBOT_DEV=1
	fi
	if [ -z "$${VOICEBOT_HASH_SALT:-}" ]; then
		# Secret answers and calling numbers are kept only as hashes keyed with this salt; a local
		# one (random, mode 600, made once and kept) serves the web process and the worker alike.
		VOICEBOT_HASH_SALT=$$($(VENV)/bin/python -c 'import pathlib, sys; from voicebot.telephony.devmode import \
			dev_salt; print(dev_salt(pathlib.Path(sys.argv[1])))' "$(CURDIR)")
		export VOICEBOT_HASH_SALT
		echo "VOICEBOT_HASH_SALT is not set: using the local salt in .run/hash-salt (set your own for real calls)."
	fi
	export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
	# The demo customers, so the default flow's verification can be tried at once (see
	# docs/identity.md); --update makes this a no-op change on every later run.
	echo "Loading the demo customers from flows/customers-demo.csv into the customer directory"
	voicebot customers import flows/customers-demo.csv --update --quiet
	exec honcho start -f Procfile

test: install
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Stops only the Redis whose pid file `make run` wrote, never one that was already running.
redis-stop:
	@pidfile=$(RUN_DIR)/redis.pid
	if [ -f "$$pidfile" ] && kill -0 "$$(cat "$$pidfile")" 2>/dev/null; then
		pid=$$(cat "$$pidfile")
		kill "$$pid"
		for _ in $$(seq 50); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done
		echo "Stopped redis-server (pid $$pid)."
	else
		echo "No redis-server started by 'make run' is running."
	fi

clean: redis-stop
	rm -rf $(VENV) $(RUN_DIR)
