# oceandata: two commands. `make up` runs the platform, `make test` runs every test.
# Both bootstrap .venv from pyproject.toml themselves (idempotent, quick when unchanged).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000
# where gateway clusters (and servers) run: local, or slurm (`make up BACKEND=slurm`)
BACKEND ?= $(or $(OCEANDATA_HUB_BACKEND),local)
# options of `python -m benchmarks all` for `make bench` (e.g. BENCH_ARGS=--quick)
BENCH_ARGS ?=
CHP    := $(VENV)/node/node_modules/.bin/configurable-http-proxy

# Real sample files: a local mirror when there is one (CI and developers: ../shared/data),
# otherwise the registry downloads them into data/sample.
ifneq ($(wildcard ../shared/data/MANIFEST.md),)
export OCEANDATA_SAMPLE_DATA ?= $(abspath ../shared/data)
endif

.PHONY: up test lint sample venv clean bench sysdeps figure catalogs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,hub,compare,viz,data]'
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null); } || \
	  { echo "npm is needed for configurable-http-proxy: apt-get install nodejs npm"; exit 1; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/node configurable-http-proxy@5
	@touch $@

# The message catalogs (oceandata/locale/*/LC_MESSAGES/*.po) compiled to .mo (docs/i18n.md).
catalogs: $(STAMP)
	$(BIN)/python -m oceandata.i18n compile >/dev/null

sample: $(STAMP)
	$(BIN)/oceandata sample fetch --all

lint: $(STAMP)
	$(BIN)/ruff check .

# Reference tools the tests compare against (CDO, nccopy), Chromium for the browser tests
# PostgreSQL for the hub-on-PostgreSQL tests and sudo (Slurm jobs submitted as the users'
# Unix accounts): installed when missing and root; otherwise the tests that need them say
# they are skipped and why. As root every user runs as their own Unix account, which must
# reach this venv's Python: REACH grants search permission (o+x) on the way to it.
REACH = [ "$$(id -u)" != 0 ] || $(BIN)/python -c 'from oceandata.hub import accounts as a; \
	  [print(f"o+x on {p}: the users\x27 Unix accounts run this venv\x27s Python") \
	   for p in a.grant_search(a.interpreter_paths())]'
SYSPKGS := cdo netcdf-bin chromium fonts-wqy-microhei postgresql sudo redis-server restic
sysdeps:
	@{ command -v cdo >/dev/null && command -v nccopy >/dev/null && test -x /usr/bin/chromium && \
	   ls /usr/share/fonts/truetype/wqy/wqy-microhei.ttc >/dev/null 2>&1 && \
	   ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v sudo >/dev/null && \
	   command -v redis-server >/dev/null && command -v restic >/dev/null; } || \
	 { [ "$$(id -u)" = 0 ] && \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSPKGS) >/dev/null 2>&1 || \
	   (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSPKGS) >/dev/null)); } || \
	  echo "cdo/nccopy/chromium/postgresql/redis/restic missing (apt-get install $(SYSPKGS)): the tests needing them are skipped"
	@bash scripts/install-slurm.sh
	@$(REACH)

test: $(STAMP) lint sysdeps catalogs
	$(BIN)/python -m pytest

# The platform's catalog: gridded samples ingested into versioned stores (idempotent).
SERVED := $(CURDIR)/var/catalogs/ocean.yaml

up: $(STAMP) sample catalogs
	$(BIN)/oceandata catalog validate
	$(BIN)/oceandata store build-samples
	OCEANDATA_CATALOG=$(SERVED) $(BIN)/oceandata catalog validate
	@$(REACH)
	OCEANDATA_CATALOG=$(SERVED) $(BIN)/oceandata hub up --port $(PORT) --backend $(BACKEND)

bench: $(STAMP) sample
	@command -v nccopy >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq netcdf-bin >/dev/null; } || echo "nccopy missing (apt-get install netcdf-bin): its column is skipped"
	$(BIN)/python -m benchmarks all $(BENCH_ARGS)

# The README's figure, made by the project's own code (oceandata.analysis + oceandata.viz).
figure: $(STAMP) sample
	$(BIN)/python scripts/make_readme_figure.py docs/img/sst_anomaly_1997.png

clean:
	rm -rf $(VENV) data/sample .pytest_cache .ruff_cache
