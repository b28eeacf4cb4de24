"""Training data: phantoms, scenarios, resumable on-disk datasets, generation and the loader.

>>> from training.data import generate, open_dataset, Loader
>>> generate(config, "data/acoustic_smoke")            # doctest: +SKIP
>>> ds = open_dataset("data/acoustic_smoke"); ds[0]["pressure"].shape   # doctest: +SKIP
"""

from training.data.config import DataConfig, load_data_config, parse_data_config
from training.data.generate import generate
from training.data.loader import Loader
from training.data.storage import Dataset, FieldSpec, open_dataset

__all__ = ["DataConfig", "Dataset", "FieldSpec", "Loader", "generate", "load_data_config", "open_dataset",
           "parse_data_config"]
