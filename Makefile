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

# The default job: simulate the leaky rate model on both backends, save netCDF, plot a few units.
run: $(STAMP)
	mkdir -p $(OUT)
	$(VENV)/bin/bioplast simulate models/leaky_rate.yaml --backend torch --trials 8 --steps 200 --no-noise --seed 0 -o $(OUT)/leaky_rate_torch.nc
	$(VENV)/bin/bioplast simulate models/leaky_rate.yaml --backend brian2 --target numpy --trials 8 --steps 200 --no-noise --seed 0 -o $(OUT)/leaky_rate_brian2.nc
	$(VENV)/bin/bioplast info $(OUT)/leaky_rate_torch.nc
	$(VENV)/bin/bioplast plot $(OUT)/leaky_rate_torch.nc $(OUT)/leaky_rate_brian2.nc -o $(OUT)/leaky_rate.png

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
