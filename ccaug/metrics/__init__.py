"""Metrics of generated data: YOLOScore (layout fidelity through a detector trained on real images)."""
