#!/bin/bash
# Wheels of what the GPU device's image lacks or holds at another version (Python 3.12; it has torch 2.11,
# torchvision 0.26, transformers, accelerate, opencv-headless, matplotlib, scipy), into .whl/ (ignored by git;
# carried with `carry: [".whl"]`): 31 MB, which with the 35 MB working tree just fits a call's 64 MiB
# (2026-12-05).
# pandas is carried because the image's 3.0.6 behaves differently (Dataset.subset lost its index name there).
# polars is not carried (its runtime wheel alone is 54 MB): Ultralytics reads it only to parse results.csv
# inside a try when it saves a checkpoint, and for plots, which ccaug turns off; an empty module stands in.
# On the device, begin each command with (used on an H100, 2026-11-24):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && mkdir -p /tmp/site/polars && touch /tmp/site/polars/__init__.py && export PYTHONPATH=/tmp/site:$PWD || exit
# and run the CLI as `python3 -m ccaug ARGS` (nothing is pip-installed there).
# `--detector-only` leaves out diffusers (6.4 MB): detector training never imports it, and the room it frees
# carries the rendered synthetic folders (trainability_gpu.sh) beside the 35 MB working tree.
set -euo pipefail
generator_wheels="diffusers==0.42.1"
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--detector-only" ]; then generator_wheels=""; rm -f .whl/diffusers-*.whl; fi
mkdir -p .git/info && { grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude; }
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    $generator_wheels ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 \
    shapely==2.2.0 pycocotools==2.0.11 albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2 \
    pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 importlib_metadata==10.2.0 pandas==3.1.1 typer==0.29.2 rich==15.0.0
du -sh .whl
