# Two entry points do all set-up on a fresh machine: `make sample` (the main job) and `make test`.
PY := .venv/bin/python
N ?= 10000
OUT ?= out/samples.zarr

.PHONY: media setup sample baseline model depthnet realism utility test benchmarks clean

setup: .venv/.installed

# Headless rendering uses EGL (Mesa's libegl1 + libgl1-mesa-dri, or a GPU driver's EGL) through
# the PyOpenGL version pyrender pins, so `pip check` stays clean (README, Install).
.venv/.installed: pyproject.toml
	@if command -v apt-get >/dev/null && ! dpkg -s libegl1 libgl1-mesa-dri >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri >/dev/null) \
		|| echo "warning: could not install libegl1 libgl1-mesa-dri; rendering needs an EGL driver" >&2; fi
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip check
	touch $@

# The main job: N samples from the shipped default model (synthgen/assets/models/default).
sample: setup
	.venv/bin/synthgen sample --n $(N) --out $(OUT) --overwrite
	.venv/bin/synthgen info $(OUT)

# The mesh-rendered baseline the model is trained and scored against.
baseline: setup
	.venv/bin/synthgen render --n $(N) --out out/baseline.zarr --workers 2 --overwrite

# The project's mesh-rendered datasets (seeds fixed: every number in docs/ names them).
SG := .venv/bin/synthgen
# The bare hand (--scene clean) trains the model's first parts; baseline v2 (render's default:
# forearm, objects, background, shape, sensor, centre-of-mass crops) its last.
data/train-clean.zarr: | .venv/.installed
	$(SG) render --n 100000 --seed 1 --scene clean --out $@ --workers 2
data/train-noisy.zarr: | .venv/.installed
	$(SG) render --n 50000 --seed 2 --scene clean --noise --out $@ --workers 2
data/test-clean.zarr: | .venv/.installed
	$(SG) render --n 4096 --seed 101 --scene clean --out $@
data/test-noisy.zarr: | .venv/.installed
	$(SG) render --n 4096 --seed 102 --scene clean --noise --out $@
data/train-v2.zarr: | .venv/.installed
	$(SG) render --n 100000 --seed 21 --out $@ --workers 2
data/test-v2.zarr: | .venv/.installed
	$(SG) render --n 4096 --seed 121 --out $@
data/default-10k.zarr: | .venv/.installed
	$(SG) sample --n 10000 --seed 0 --out $@
data/samples-100k.zarr: | .venv/.installed
	$(SG) sample --n 100000 --seed 1 --out $@
TEST_DATA := data/test-clean.zarr data/test-noisy.zarr data/test-v2.zarr

# Rebuild the default model from scratch: its training data, recipes/default.toml, then
# recipes/default-refine.toml, recipes/default-polish.toml and recipes/default-robust.toml,
# -robust2.toml, -robust3.toml, -skeleton-center.toml, -center-jitter.toml, -center-jitter2.toml,
# -center-jitter3.toml, -kinematic.toml, -prior.toml, -kinematic-posterior.toml, -v2-posterior.toml,
# -v2-generator.toml (each continues from the run before it), then
# ship the result.
# recipes/default-polish2.toml and -polish3.toml continue default-polish differently and are not
# shipped: see their headers.
MODEL_RUN := runs/default-v2-generator
model: data/train-clean.zarr data/train-noisy.zarr data/train-v2.zarr $(TEST_DATA)
	$(SG) train --recipe recipes/default.toml
	$(SG) train --recipe recipes/default-refine.toml
	$(SG) train --recipe recipes/default-polish.toml
	$(SG) train --recipe recipes/default-robust.toml
	$(SG) train --recipe recipes/default-robust2.toml
	$(SG) train --recipe recipes/default-robust3.toml
	$(SG) train --recipe recipes/default-skeleton-center.toml
	$(SG) train --recipe recipes/default-center-jitter.toml
	$(SG) train --recipe recipes/default-center-jitter2.toml
	$(SG) train --recipe recipes/default-center-jitter3.toml
	$(SG) train --recipe recipes/default-kinematic.toml
	$(SG) train --recipe recipes/default-prior.toml
	$(SG) train --recipe recipes/default-kinematic-posterior.toml
	$(SG) train --recipe recipes/default-v2-posterior.toml
	$(SG) train --recipe recipes/default-v2-generator.toml
	cp $(MODEL_RUN)/model/config.json $(MODEL_RUN)/model/model.safetensors synthgen/assets/models/default/
	cp $(MODEL_RUN)/eval.json docs/default_eval.json
	cp $(MODEL_RUN)/eval.png docs/default_eval.png
	cp $(MODEL_RUN)/metrics.csv docs/default_metrics.csv
	$(SG) estimate data/test-clean.zarr --json > docs/estimate_test_clean.json
	$(SG) estimate data/test-noisy.zarr --json > docs/estimate_test_noisy.json
	$(SG) estimate data/test-v2.zarr --json > docs/estimate_test_v2.json

# Retrain the realism feature network / independent pose estimator (synthgen/assets/depthnet).
depthnet: data/train-clean.zarr data/train-noisy.zarr
	$(PY) -m synthgen.models.depthnet --stores data/train-clean.zarr data/train-noisy.zarr --out synthgen/assets/depthnet --steps 2500

# docs/realism.md: the default model's scores next to baseline and corrupted-baseline rows.
realism: data/train-clean.zarr data/default-10k.zarr $(TEST_DATA)
	$(PY) benchmarks/realism_table.py

# docs/utility.md: a regressor on 1k labeled renders, with 100k synthgen samples or 100k true renders.
data/oracle-100k.zarr: | .venv/.installed
	$(SG) render --n 100000 --seed 3 --scene clean --out $@ --workers 2
utility: data/train-clean.zarr data/samples-100k.zarr data/oracle-100k.zarr $(TEST_DATA)
	$(PY) benchmarks/utility.py

# docs/render_grid.png (baseline v2), docs/sample_grid.png, docs/walk.gif, docs/interpolate.gif
# from the shipped default model.
media: setup
	$(SG) render --n 16 --seed 7 --out out/media-render.zarr --overwrite
	$(SG) preview out/media-render.zarr --n 16 --out docs/render_grid.png --overwrite
	$(SG) sample --n 16 --seed 0 --out out/media-grid.zarr --overwrite
	$(SG) preview out/media-grid.zarr --n 16 --out docs/sample_grid.png --overwrite
	$(SG) walk --steps 120 --step-size 0.15 --seed 0 --video docs/walk.gif --overwrite
	$(SG) interpolate --from seed:1 --to seed:2 --steps 60 --mode slerp --video docs/interpolate.gif --overwrite

test: setup
	.venv/bin/ruff check .
	$(PY) -m pytest -q

benchmarks: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf .venv out
