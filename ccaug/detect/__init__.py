"""The detector side: offline Ultralytics YOLO, real/synthetic mixing at equal budgets, the copy-paste
baseline, and the trainability report.

Importing this package does not import Ultralytics; `ccaug.detect.offline.use_offline_ultralytics` runs first
wherever it is needed.
"""

from ccaug.detect.experiment import TrainabilityConfig, run_trainability
from ccaug.detect.yolo import DetectorSettings, Evaluation

__all__ = ["DetectorSettings", "Evaluation", "TrainabilityConfig", "run_trainability"]
