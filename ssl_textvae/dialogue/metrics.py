"""Multi-reference response metrics of Zhao et al. (ACL 2017), in numpy and scipy only.

For each context, several sampled hypotheses are scored against its references:
precision is the mean over hypotheses of the best score against any reference,
recall the mean over references of the best score of any hypothesis; both are then
averaged over contexts. With one reference per context (DailyDialog), precision is
the mean score of the samples and recall the score of the best sample.

- BLEU-n: smoothed sentence BLEU, cumulative with uniform weights over 1..n-grams,
  brevity penalty, and add-one smoothing of the 2..n-gram precisions (Lin and Och
  2004; nltk's ``SmoothingFunction().method2``). Zhao et al. used nltk's method 7, so
  absolute values are not comparable with theirs, only between models here.
- A-bow / E-bow: cosine similarity of the average / the extrema (per dimension the
  value of largest magnitude) of the word vectors of the two texts. Zhao et al. used
  GloVe, which is not available offline here; :func:`fit_word_vectors` fits PPMI-SVD
  word vectors on given texts instead (the training responses in the recipe), the same
  vectors for every model.
- distinct-n: distinct n-grams over all n-grams of all hypotheses (Li et al. 2016).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["WordVectors", "bow_embedding", "distinct_n", "fit_word_vectors", "response_metrics",
           "sentence_bleu"]


def _ngrams(tokens, n):
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def sentence_bleu(reference: Sequence[str], hypothesis: Sequence[str], max_order: int = 4) -> float:
    """Smoothed sentence BLEU-``max_order`` of a token list against one reference (see module doc)."""
    if not hypothesis or not reference:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_order + 1):
        hyp, ref = Counter(_ngrams(hypothesis, n)), Counter(_ngrams(reference, n))
        matches, total = sum((hyp & ref).values()), max(len(hypothesis) - n + 1, 1)  # as nltk
        if n > 1:
            matches, total = matches + 1, total + 1
        if matches == 0:  # no unigram in common: BLEU is 0
            return 0.0
        log_precision += math.log(matches / total) / max_order
    ratio = len(reference) / len(hypothesis)
    brevity = 0.0 if ratio <= 1 else 1.0 - ratio
    return math.exp(brevity + log_precision)


class WordVectors:
    """Word -> vector lookup: ``vocabulary`` (word -> row) and ``vectors`` (n_words, dim)."""

    def __init__(self, vocabulary: Dict[str, int], vectors: np.ndarray):
        self.vocabulary, self.vectors = vocabulary, vectors

    def lookup(self, tokens) -> np.ndarray:
        rows = [self.vocabulary[t] for t in tokens if t in self.vocabulary]
        return self.vectors[rows]                                            # (known tokens, dim)


def fit_word_vectors(texts, dim=100, window=4, max_words=20_000, min_count=2, random_state=0) -> WordVectors:
    """PPMI-SVD word vectors (Levy and Goldberg 2014) from whitespace-tokenized ``texts``:
    co-occurrence counts within ``window`` words, positive PMI with context-distribution
    smoothing 0.75, truncated SVD; rows U * sqrt(S), normalized to unit length."""
    from scipy import sparse
    from scipy.sparse.linalg import svds

    tokenized = [text.split() for text in texts]
    counts = Counter(t for tokens in tokenized for t in tokens)
    words = [w for w, c in counts.most_common(max_words) if c >= min_count]
    vocabulary = {w: i for i, w in enumerate(words)}
    rows, cols = [], []
    for tokens in tokenized:
        ids = [vocabulary.get(t, -1) for t in tokens]
        for i, a in enumerate(ids):
            if a < 0:
                continue
            for b in ids[i + 1:i + 1 + window]:
                if b >= 0:
                    rows += [a, b]
                    cols += [b, a]
    n = len(words)
    if n < 3 or not rows:
        raise ValueError(f"Too few words ({n}) or co-occurrences to fit word vectors; give more text.")
    matrix = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    word_sums = np.asarray(matrix.sum(1)).ravel()
    context_sums = np.asarray(matrix.sum(0)).ravel() ** 0.75
    matrix = matrix.tocoo()
    pmi = np.log(matrix.data * context_sums.sum() / (word_sums[matrix.row] * context_sums[matrix.col]))
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (matrix.row[keep], matrix.col[keep])), shape=(n, n))
    k = min(dim, n - 2)
    start = np.random.default_rng(random_state).uniform(-1, 1, n)
    u, s, _ = svds(ppmi, k=k, v0=start)
    vectors = u * np.sqrt(s)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return WordVectors(vocabulary, vectors.astype(np.float32))


def bow_embedding(tokens, word_vectors: WordVectors, kind="average") -> Optional[np.ndarray]:
    """The average (A-bow) or extrema (E-bow) of the vectors of the known tokens; None if none is known."""
    vectors = word_vectors.lookup(tokens)
    if not len(vectors):
        return None
    if kind == "average":
        return vectors.mean(0)
    largest, smallest = vectors.max(0), vectors.min(0)
    return np.where(np.abs(largest) >= np.abs(smallest), largest, smallest)


def _cosine(a, b):
    if a is None or b is None:
        return 0.0
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def distinct_n(hypotheses: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams / all n-grams over the token lists ``hypotheses``."""
    grams = [g for tokens in hypotheses for g in _ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _precision_recall(scores: np.ndarray):
    # scores: (hypotheses, references)
    return float(scores.max(1).mean()), float(scores.max(0).mean())


def response_metrics(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                     word_vectors: Optional[WordVectors] = None, lowercase=True) -> Dict[str, float]:
    """Multi-reference metrics: ``hypotheses[i]`` and ``references[i]`` are the sampled
    responses and the reference responses (strings) of context i. Returns
    ``bleu{n}_precision`` / ``bleu{n}_recall`` for n = 1..4, with ``word_vectors``
    ``a_bow_*`` and ``e_bow_*`` precision and recall, ``distinct1``, ``distinct2`` and
    ``mean_length`` of the hypotheses."""
    if len(hypotheses) != len(references):
        raise ValueError(f"Got hypotheses for {len(hypotheses)} contexts and references for "
                         f"{len(references)}; expected the same number.")

    def split(text):
        return (text.lower() if lowercase else text).split()

    sums: Dict[str, float] = Counter()
    all_hypotheses: List[List[str]] = []
    for samples, refs in zip(hypotheses, references):
        hyps = [split(h) for h in samples]
        refs = [split(r) for r in refs]
        if not hyps or not refs:
            raise ValueError("Every context needs at least one hypothesis and one reference.")
        all_hypotheses += hyps
        for n in range(1, 5):
            scores = np.array([[sentence_bleu(r, h, n) for r in refs] for h in hyps])
            p, r = _precision_recall(scores)
            sums[f"bleu{n}_precision"] += p
            sums[f"bleu{n}_recall"] += r
        if word_vectors is not None:
            for kind, name in (("average", "a_bow"), ("extrema", "e_bow")):
                hyp_vectors = [bow_embedding(h, word_vectors, kind) for h in hyps]
                ref_vectors = [bow_embedding(r, word_vectors, kind) for r in refs]
                p, r = _precision_recall(np.array([[_cosine(h, r) for r in ref_vectors] for h in hyp_vectors]))
                sums[f"{name}_precision"] += p
                sums[f"{name}_recall"] += r
    result = {key: value / len(hypotheses) for key, value in sums.items()}
    result["distinct1"] = distinct_n(all_hypotheses, 1)
    result["distinct2"] = distinct_n(all_hypotheses, 2)
    result["mean_length"] = float(np.mean([len(h) for h in all_hypotheses]))
    return result
