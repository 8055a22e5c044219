"""Dataset readers (UTKFace, All-Age-Faces, IMDB-WIKI, CSV), the prepare step, and prepared-dataset access."""

from .aaf import read_aaf
from .csv_labels import read_labels_csv
from .dataset import PreparedDataset
from .imdb_wiki import FilterReport, NoiseFilter, read_imdb_wiki
from .prepare import CropSpec, prepare_dataset
from .records import Sample
from .utkface import read_utkface

__all__ = [
    "CropSpec", "FilterReport", "NoiseFilter", "PreparedDataset", "Sample",
    "prepare_dataset", "read_aaf", "read_imdb_wiki", "read_labels_csv", "read_utkface",
]
