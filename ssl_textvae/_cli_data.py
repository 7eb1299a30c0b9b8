"""What the commands of :mod:`ssl_textvae.cli` read and report: examples from either file
format (a ``.csv`` or ``.jsonl`` table by column name, else ``label<TAB>text`` lines), the
settings :mod:`ssl_textvae.presets` picks from the texts, and the cross-validated accuracy
of ``fit --cv`` next to two baselines."""

from __future__ import annotations

import itertools
import os

import numpy as np

from ._cli_args import POSITIVE

TABLE_HELP = ("a .csv or .jsonl file (columns --text-column, --label-column; a missing, empty, null "
              "or -1 label = unlabeled), else 'label<TAB>text' lines (label -1 or no tab = unlabeled)")


def read_pool(path, max_texts):
    from .text.inputs import TextFile

    if path is None:
        return None
    pool = TextFile(path)
    return pool if max_texts is None else list(itertools.islice(pool, max_texts))


def pretrain_texts(path, text_column, max_texts):
    from .text.inputs import TextFile

    if os.path.isdir(path):
        import datasets

        data = datasets.load_from_disk(path)
        if isinstance(data, datasets.DatasetDict):
            raise ValueError(f"{path!r} holds the splits {list(data)}; pass the folder of one "
                             "split (save_to_disk of a Dataset, not of a DatasetDict).")
        if text_column is not None:
            if text_column not in data.column_names:
                raise ValueError(f"Column {text_column!r} not in {path!r}; it has {data.column_names}.")
            data = data.select_columns([text_column])
        return data if max_texts is None else data.select(range(min(max_texts, len(data))))
    if not os.path.isfile(path):
        raise ValueError(f"--texts {path!r} is neither a text file nor a folder written by save_to_disk.")
    return read_pool(path, max_texts)


def add_table_options(parser):
    parser.add_argument("--text-column", default="text",
                        help="the text column of a .csv or .jsonl file (default: text)")
    parser.add_argument("--label-column", default="label",
                        help="the label column of a .csv or .jsonl file (default: label)")
    parser.add_argument("--encoding", default="utf-8",
                        help="the files' text encoding, for example latin-1 or cp1252 (default: utf-8)")


def add_auto_vae_option(parser):
    parser.add_argument("--auto-vae", action="store_true",
                        help="pick the VAE's tokenizer, vocabulary, size and epochs from the texts "
                             "(ssl_textvae.presets); every vae__ --param still wins")


def read_examples(path, args, allow_unlabeled=True, labels=True):
    """``(texts, labels)`` of ``path`` in its format, labels as str ("-1": unlabeled)."""
    from .text.inputs import read_labeled_file
    from .text.tables import is_table, read_table

    if is_table(path):
        return read_table(path, args.text_column, args.label_column, args.encoding, labels,
                          allow_unlabeled)
    return read_labeled_file(path, args.encoding, allow_unlabeled=allow_unlabeled)


def auto_vae_params(texts, params):
    """``vae__`` settings that :func:`ssl_textvae.presets.data_dependent_params` picks for
    ``texts``, under the given ``params`` (which win)."""
    from .presets import data_dependent_params, describe_texts

    description = describe_texts(texts)
    if "vae__tokenizer" in params:   # a given tokenizer says whether the texts are pre-tokenized
        description["pretokenized"] = params["vae__tokenizer"] == "word"
    return {**{f"vae__{name}": value for name, value in data_dependent_params(description).items()},
            **params}


def add_cv_option(parser):
    parser.add_argument("--cv", type=POSITIVE, metavar="K",
                        help="first report K-fold cross-validated accuracy on the labeled rows (the "
                             "VAE pretrained once, shared by the folds) next to the majority class "
                             "and TF-IDF + logistic regression; K >= 2")


def cross_validate(model, texts, labels, k, random_state):
    """{name: {"mean", "std", "folds"}} of ``model`` (its VAE frozen) and two baselines,
    on the same stratified folds of the labeled rows."""
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    if k < 2:
        raise ValueError(f"--cv must be at least 2 (cross-validation needs 2 folds), got {k}.")
    keep = np.asarray(labels) != "-1"
    X, y = np.asarray(texts, dtype=object)[keep], np.asarray(labels)[keep]
    smallest = np.unique(y, return_counts=True)[1].min()
    if smallest < 2:
        raise ValueError("Every class needs at least 2 labeled rows for --cv; one has "
                         f"{smallest}.")
    folds = StratifiedKFold(int(min(k, smallest)), shuffle=True, random_state=random_state)
    models = {type(model).__name__: model, "majority": DummyClassifier(strategy="most_frequent"),
              "tfidf_lr": make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                                        LogisticRegression(C=10.0, max_iter=2000))}
    scores = {name: cross_val_score(estimator, X, y, cv=folds) for name, estimator in models.items()}
    return {name: {"mean": float(v.mean()), "std": float(v.std()), "folds": v.tolist()}
            for name, v in scores.items()}
