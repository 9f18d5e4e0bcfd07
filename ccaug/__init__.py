"""ccaug: synthetic-data augmentation for remote-sensing object detection."""

__version__ = "0.1.0"
