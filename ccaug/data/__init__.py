"""The data model (`Dataset`), box geometry, the readers and writers of every format, and tiling."""

from ccaug.data.dataset import IMAGE_COLUMNS, INSTANCE_COLUMNS, Dataset
from ccaug.data.errors import DataError, Problems
from ccaug.data.formats import FORMATS, read_dataset, write_dataset

__all__ = [
    "FORMATS",
    "IMAGE_COLUMNS",
    "INSTANCE_COLUMNS",
    "DataError",
    "Dataset",
    "Problems",
    "read_dataset",
    "write_dataset",
]
