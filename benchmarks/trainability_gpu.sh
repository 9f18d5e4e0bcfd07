#!/usr/bin/env bash
# Issue 8's trainability experiment end to end on one GPU machine: the scarce real set, a generator trained on
# it alone, the synthetic folders, then every detector run, JOBS at a time (6 kept an H100 96-99 % busy).
# Resumable: rerun the same command. BENCHMARKS.md's trainability table comes from `trainability.py --table`.
# Measured on an H100 (BENCHMARKS.md, "On the GPU device"): the generator's 2,600 steps take ~17 min there
# (~40 images/s, host-bound), the main experiment's 18 detector runs ~16 min and the sweep's 24 ~20 min more.
#
#   bash benchmarks/trainability_gpu.sh OUT [JOBS] [GENERATOR_STEPS]
set -euo pipefail
out=${1:?usage: bash benchmarks/trainability_gpu.sh OUT [JOBS] [GENERATOR_STEPS]}
jobs=${2:-8}
steps=${3:-2600}  # the shipped default generator's steps, so that both generators had the same training
generator="$out/generator"

if [ ! -f "$out/real-50/done" ]; then
    python benchmarks/trainability.py --out "$out" || test -f "$out/real-50/done"  # writes real-50, then stops
fi

# tiny-aerial as it is, with more loader workers (16 cores here) and fewer checkpoints: the same training
python - "$out/tiny-aerial-gpu.yaml" <<'PY'
import sys, yaml
recipe = yaml.safe_load(open("recipes/tiny-aerial.yaml"))
recipe["training"].update(num_workers=6, checkpoint_every=1000)
yaml.safe_dump(recipe, open(sys.argv[1], "w"), sort_keys=False)
PY
resume=$([ -f "$generator/run.json" ] && echo --resume || echo --no-resume)
start=$(date +%s)
ccaug train-generator --recipe "$out/tiny-aerial-gpu.yaml" --data "$out/real-50" --format dota --out "$generator" \
    --max-steps "$steps" "$resume"
echo "generator: $(( $(date +%s) - start )) s"

python benchmarks/trainability.py --out "$out" --model "$generator" --device 0 --jobs "$jobs"
python benchmarks/trainability.py --out "$out" --model "$generator" --device 0 --jobs "$jobs" --sweep
