#!/bin/bash
# Wheels of what the GPU device's image lacks (Python 3.12; it has torch 2.11, torchvision 0.26, transformers,
# accelerate, pandas, opencv-headless, matplotlib, scipy, rich, typer), into .whl/ (ignored by git; carried
# with `carry: [".whl"]`). 46 MB together; a device call carries at most 64 MiB with the working tree.
# polars is pinned to 0.20.31 (28.8 MB) because 2.x brings a 54 MB runtime wheel; Ultralytics needs
# polars >= 0.20 only to read its results.csv when it saves a checkpoint.
# On the device, begin each command with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD || exit
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info && { grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude; }
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    diffusers==0.42.1 ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 polars==0.20.31 \
    shapely==2.2.0 pycocotools==2.0.11 albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2 \
    pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
du -sh .whl
