"""Layouts: fit a layout model to a data set, sample and perturb layouts, caption and compare them."""

from ccaug.layouts.layout import Layout, layouts_from_dataset, layouts_to_dataset, read_layouts, write_layouts

__all__ = ["Layout", "layouts_from_dataset", "layouts_to_dataset", "read_layouts", "write_layouts"]
