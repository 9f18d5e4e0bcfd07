"""Benchmark: YOLOv8n training time on a CPU with Ultralytics' own thread count versus every core.

Ultralytics trains on ``cpu_count - 1`` threads (one core on a 2-core machine); ccaug raises that to every
core (`ccaug.detect.offline`). This times two epochs of one data set at 256 px with each, one after the
other, each in a fresh interpreter, validation off:

    python benchmarks/bench_yolo_threads.py --data /tmp/headroom100/full/data/lists/real-only-seed0.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

RUN = """
import json, sys, time
from ccaug.detect.offline import use_offline_ultralytics
use_offline_ultralytics(sys.argv[2] + "/ultralytics")
import torch
import ultralytics.utils.torch_utils as torch_utils
if sys.argv[3] != "ccaug":
    torch_utils.NUM_THREADS = int(sys.argv[3])
from ultralytics import YOLO
started = time.perf_counter()
YOLO("yolov8n.yaml").train(data=sys.argv[1], epochs=2, imgsz=256, batch=16, device="cpu", workers=2, seed=0,
    deterministic=True, plots=False, val=False, project=sys.argv[2], name="run", exist_ok=True, verbose=False)
print(json.dumps({"threads": torch.get_num_threads(), "seconds": time.perf_counter() - started}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="An Ultralytics data YAML (e.g. one train-detector wrote).")
    args = parser.parse_args()
    ultralytics_default = str(max(1, (os.cpu_count() or 1) - 1))
    for label, threads in (("Ultralytics' default", ultralytics_default), ("ccaug", "ccaug")):
        with tempfile.TemporaryDirectory() as folder:
            result = subprocess.run(
                [sys.executable, "-c", RUN, args.data, folder, threads], capture_output=True, text=True, check=True
            )
        timing = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{label}: {timing['threads']} threads, {timing['seconds']:.1f} s for 2 epochs")


if __name__ == "__main__":
    main()
