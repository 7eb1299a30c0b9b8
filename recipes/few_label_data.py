"""Reader of the few-label splits made by ``../shared/data/make_splits.py``.

A set's ``split/`` folder holds ``pool.txt`` (one unlabeled text a line, the labeled ones
included), ``train.<N>.tsv`` (``label<TAB>text``, nested subsets of the pool) and
``test.tsv`` (same format). Only these files are read; nothing is copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("banking77", "snips", "sms_spam", "financial_phrasebank")


def read_lines(path):
    """Lines of a UTF-8 file split on LF only (texts may hold other break characters)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_tsv(path):
    """``(texts, labels)`` of a ``label<TAB>text`` file; labels as str."""
    texts, labels = [], []
    for number, line in enumerate(read_lines(path), 1):
        label, sep, text = line.partition("\t")
        if not sep or not label or not text.strip():
            raise ValueError(f"{path}, line {number}: expected 'label<TAB>text', got {line[:60]!r}.")
        texts.append(text)
        labels.append(label)
    return texts, np.asarray(labels, dtype=object)


def vae_path(vae_dir, name, seed):
    """Where ``few_label_benchmark.py --vae-dir`` keeps a set's pretrained default VAE."""
    return Path(vae_dir).expanduser() / f"{name}-seed{seed}"


def load_set(data_dir, name, budgets, test=True):
    """``{"pool": [...], N: (texts, labels) for N in budgets, "test": (texts, labels)}``."""
    split = Path(data_dir) / name / "split"
    if not (split / "pool.txt").is_file():
        raise FileNotFoundError(f"No {split / 'pool.txt'}: expected a folder made by "
                                f"make_splits.py (pool.txt, train.<N>.tsv, test.tsv); "
                                f"pass --data-dir.")
    data = {"pool": [t for t in read_lines(split / "pool.txt") if t.strip()]}
    for budget in budgets:
        path = split / f"train.{budget}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"No {path}: budgets must be among the train.<N>.tsv files of {split}.")
        data[budget] = read_tsv(path)
    if test:
        data["test"] = read_tsv(split / "test.tsv")
    return data
