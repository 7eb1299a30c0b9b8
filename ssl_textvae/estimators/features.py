"""The head's input: the latent means, and optionally TF-IDF word features beside them.

A BN-VAE's 32-number code keeps the topic and form of a sentence. Where classes differ in one
or two words of otherwise alike sentences (banking77's 77 intents about the same card) it keeps
too little of them, and logistic regression on the means is far under TF-IDF (5 against 20%
at 100 labels). ``word_weight > 0`` (beyond the paper) puts TF-IDF features of words and word
pairs beside the standardized means, so one head can use both; 0 is the paper's head.
With a pretrained encoder (``BNVAE(encoder=...)``), ``embedding_weight > 0`` puts the
encoder's own vectors beside the means the same way: the latent beside the embedding,
not instead of it.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import StandardScaler

from ._validation import Interval

WORD_WEIGHT = Interval(numbers.Real, 0, None)   # BNVAEClassifier's constraint on word_weight
EMBEDDING_WEIGHT = WORD_WEIGHT                   # and on embedding_weight


def check_word_weight(word_weight):
    """``word_weight`` as a float, or a ``ValueError`` worded as the estimators word theirs
    (for callers without an estimator: tuning, recipes)."""
    if word_weight not in WORD_WEIGHT:
        raise ValueError(f"The 'word_weight' parameter must be {WORD_WEIGHT} (0: the latent means "
                         f"alone). Got {word_weight!r} instead.")
    return float(word_weight)


def fit_words(texts):
    """TF-IDF of words and word pairs over ``texts`` (every text, labeled or not): terms seen
    in at least 2 texts, or in 1 where that would leave none (a tiny corpus)."""
    texts = list(texts)
    try:
        return _vectorizer(min_df=2).fit(texts)
    except ValueError:   # "After pruning, no terms remain"
        pass
    try:
        return _vectorizer(min_df=1).fit(texts)
    except ValueError:   # "empty vocabulary"
        raise ValueError("word_weight > 0 needs words: the texts hold no word TF-IDF can count "
                         "(tokens of 2 or more letters or digits).") from None


def _vectorizer(min_df):
    return TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, dtype=np.float32)


def fit_scaler(means):
    """Standardizes each latent dimension (fitted on the labeled texts' means)."""
    return StandardScaler().fit(means)


def head_features(means, texts, scaler, words, word_weight, embeddings=None, embedding_weight=0.0):
    """The head's input for ``texts``: their means alone when both weights are 0; else
    the standardized means divided by sqrt(latent_dim) (a block of norm about 1, like a
    TF-IDF row or a normalized embedding) beside ``word_weight`` times their TF-IDF row
    and ``embedding_weight`` times the pretrained encoder's vectors ``embeddings``
    (L2-normalized, :meth:`BNVAE.embed`); sparse when there are words."""
    if not word_weight and not embedding_weight:
        return means
    blocks = [(scaler.transform(means) / np.sqrt(means.shape[1])).astype(np.float32)]
    if embedding_weight:
        blocks.append(embedding_weight * np.asarray(embeddings, dtype=np.float32))
    if not word_weight:
        return np.hstack(blocks)
    return sp.hstack([sp.csr_matrix(block) for block in blocks]
                     + [word_weight * words.transform(list(texts))], format="csr")
