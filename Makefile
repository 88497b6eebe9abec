# Two entry points do all set-up on a fresh machine: `make sample` (the main job) and `make test`.
PY := .venv/bin/python
N ?= 10000
OUT ?= out/samples.zarr

.PHONY: setup sample baseline model test benchmarks clean

setup: .venv/.installed

# Headless rendering: EGL ships with the image; OSMesa (the fallback) needs libosmesa6 and
# PyOpenGL >= 3.1.7, which pyrender's pin (3.1.0) does not allow, hence the second pip step.
.venv/.installed: pyproject.toml
	@if command -v apt-get >/dev/null && ! dpkg -s libosmesa6 >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null) \
		|| echo "warning: libosmesa6 not installed; rendering will use EGL only" >&2; fi
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q 'pyopengl==3.1.10' 2>&1 | grep -v -e 'pyrender 0.1.45 requires' -e 'dependency resolver' -e 'is ignored' || true
	touch $@

# The main job: N samples from the shipped default model (assets/models/default).
sample: setup
	.venv/bin/synthgen sample --n $(N) --out $(OUT) --overwrite
	.venv/bin/synthgen info $(OUT)

# The mesh-rendered baseline the model is trained and scored against.
baseline: setup
	.venv/bin/synthgen render --n $(N) --out out/baseline.zarr --workers 2 --overwrite

# Rebuild the default model from scratch: its training data, then recipes/default.toml.
model: setup
	.venv/bin/synthgen render --n 100000 --seed 1 --out data/train-clean.zarr --workers 2 --overwrite
	.venv/bin/synthgen train --recipe recipes/default.toml

test: setup
	$(PY) -m pytest -q

benchmarks: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf .venv out
