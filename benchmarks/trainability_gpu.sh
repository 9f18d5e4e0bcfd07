#!/usr/bin/env bash
# Issue 8's trainability detector runs on the GPU device, sized for one session's 15 minutes of device time
# (start-up included). The device trains detectors only: 2,600 generator steps took ~17 min on an H100
# (host-bound, BENCHMARKS.md), so the scarce set's generator and the synthetic folders are made on the CPU
# machine. The rendered folders travel packed in .carry/synth.tgz; OUT/real-50 is written again there from
# the embedded set, identically. The records of the runs that finished (benchmarks/results/trainability/)
# come back in $OUT/records.tgz, also when the time limit stops the script.
#
# Here, once (the working tree, the wheels and the pack must stay under a call's 64 MiB together):
#   python benchmarks/trainability.py --out runs/trainability --model runs/gen-real-50 --render-only [--sweep]
#   bash benchmarks/fetch_device_wheels.sh --detector-only
#   bash benchmarks/trainability_gpu.sh --pack runs/trainability
# Device (the `run` tool), one experiment per session: `main` (9 runs: real-only, synthetic and copy-paste,
# 3 seeds, all at once), then `main-obb`, then the sweep's experiments, a few at a time:
#   command: bash benchmarks/trainability_gpu.sh runs/trainability 480 9 main
#   carry:   [".whl", ".carry"]          timeout_s: 600
# Here again: tar xzf <files_at>/records.tgz, then commit benchmarks/results/.
#
# A GPU run is another experiment than a CPU run (the device is part of its settings, and its numerics
# differ), so its real-only and copy-paste arms train there too, and its table stands apart from the CPU one.
#
#   bash benchmarks/trainability_gpu.sh --pack OUT
#   bash benchmarks/trainability_gpu.sh OUT SECONDS JOBS EXPERIMENT...
set -uo pipefail
usage="usage: bash benchmarks/trainability_gpu.sh [--pack OUT | OUT SECONDS JOBS EXPERIMENT...]"
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
    # what trainability.py reads of a finished synth folder: images, labels, manifest, summary (no banks,
    # no exports in other formats)
    out=${2:?$usage}
    mkdir -p .carry && { grep -qx "/.carry/" .git/info/exclude 2>/dev/null || echo "/.carry/" >>.git/info/exclude; }
    cd "$out" || exit 1
    folders=$(for f in synth/*/summary.json synth/*/done; do [ -f "$f" ] && dirname "$f"; done | sort -u)
    [ -n "$folders" ] || { echo "no finished synth folder under $out/synth" >&2; exit 1; }
    tar czf "$OLDPWD/.carry/synth.tgz" $(for f in $folders; do
        for part in images labelTxt manifest.jsonl summary.json done; do [ -e "$f/$part" ] && echo "$f/$part"; done
    done)
    du -h "$OLDPWD/.carry/synth.tgz"
    exit 0
fi

out=${1:?$usage}
seconds=${2:?$usage}
jobs=${3:?$usage}
shift 3
[ $# -gt 0 ] || { echo "name at least one experiment (main, main-obb, or a sweep experiment)" >&2; exit 2; }

if [ -d .whl ]; then  # the device's image lacks these packages or holds other versions (fetch_device_wheels.sh)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && mkdir -p /tmp/site/polars && touch /tmp/site/polars/__init__.py || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
if [ -f .carry/synth.tgz ]; then
    mkdir -p "$out" && tar xzf .carry/synth.tgz -C "$out" || exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# SIGINT reaches every detector process (timeout signals its whole process group); a run that finished
# before it is recorded, the others train again on the next call
start=$(date +%s)
timeout --signal=INT --kill-after=30 "$seconds" \
    python3 benchmarks/trainability.py --out "$out" --device 0 --jobs "$jobs" --variants "$@"
echo "trainability: exit $?, $(($(date +%s) - start)) s"
python3 benchmarks/trainability.py --out "$out" --device 0 --table
if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/records.tgz" benchmarks/results/trainability
    find "$out/detect" -name "seed*.log" -print0 | tar czf "$OUT/logs.tgz" --null -T -
fi
