# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bioplast-installed
OUT := out

.PHONY: run test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The default job: train the quickstart protocol, summarize it, plot learning curve and trials,
# then analyse the trained network (timescales, fixed points, mechanism, geometry) and plot that.
run: $(STAMP)
	mkdir -p $(OUT)
	$(VENV)/bin/bioplast run protocols/quickstart.yaml -o $(OUT)/quickstart.nc
	$(VENV)/bin/bioplast info $(OUT)/quickstart.nc
	$(VENV)/bin/bioplast plot $(OUT)/quickstart.nc -o $(OUT)/quickstart.png
	$(VENV)/bin/bioplast analyze $(OUT)/quickstart.nc -o $(OUT)/quickstart_analysis.nc
	$(VENV)/bin/bioplast plot $(OUT)/quickstart_analysis.nc -o $(OUT)/quickstart_analysis.png

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
