# The quick start: `make demo` and `make test` on a fresh clone, nothing installed but Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?= 0

.PHONY: demo test unit install clean promtool browser stunnel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ecm demo --duration $(DURATION)

test: $(STAMP) promtool browser stunnel
	$(BIN)/python -m pytest -q -p no:cacheprovider

# promtool and the Prometheus server come from Debian's prometheus package; the alert-rule
# tests and the Prometheus integration test need them.
promtool:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus package (promtool, prometheus)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q prometheus; }

# The duty desk's board is tested in a real headless Chromium: Debian's chromium and
# chromium-driver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver (the board's browser test)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

# The TLS test puts Debian's stunnel in front of the embedded broker (tests/tls.py says why).
stunnel:
	@command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || { \
	  echo "installing Debian's stunnel4 (the TLS test)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q stunnel4; }

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

clean:
	rm -rf $(VENV) .ecm-data
