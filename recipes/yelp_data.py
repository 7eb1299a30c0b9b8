"""The short-Yelp files of the recipes: one loader for the labeled splits and the pool.

The recipes import it as a sibling module (Python puts a script's folder on
``sys.path``); see ``data_cards/short_yelp.md`` for where the files come from.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ssl_textvae import TextFile, read_labeled_file

POOL_FILE = "short_yelp.unlabeled.txt"


def split_path(data_dir, name) -> Path:
    """``short_yelp.<name>.txt`` in ``data_dir`` (``name``: "test", "valid", "train.100", ...)."""
    path = Path(data_dir) / f"short_yelp.{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"Expected {path} (label<TAB>text lines); check --data-dir. See "
                                "data_cards/short_yelp.md for how to obtain the files.")
    return path


def load_split(data_dir, name, limit=None):
    """Texts and integer labels of a labeled split, the first ``limit`` lines when given."""
    path = split_path(data_dir, name)
    texts, labels = read_labeled_file(path)
    try:
        return texts[:limit], np.asarray([int(label) for label in labels[:limit]])
    except ValueError as error:
        raise ValueError(f"{path}: labels must be integers such as 0 / 1 ({error}).") from None


def load_pool(data_dir, size=None):
    """The unlabeled pool: a streamed ``TextFile``, or a list of its first ``size`` lines."""
    path = Path(data_dir) / POOL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Expected the unlabeled pool {path}; check --data-dir. See "
                                "data_cards/short_yelp.md.")
    pool = TextFile(path)
    return pool if size is None else list(itertools.islice(pool, size))
