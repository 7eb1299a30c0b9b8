"""The opt-in adaptive softmax of the decoder (``softmax="adaptive"``; Grave et al.,
ICML 2017): the frequent words in a head, the rare ones in clusters behind smaller
projections. The weights live in ``nn.AdaptiveLogSoftmaxWithLoss``; the functions
here compute with them so that every log-softmax is fp32 under autocast.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SOFTMAXES = ("full", "adaptive")


def adaptive_cutoffs(vocab_size):
    """Cluster boundaries of the adaptive softmax: word ids below 1,000 (or a quarter
    of the vocabulary) in the head, up to 4,000 (or half) in the first tail cluster,
    the rest in the second. Word-level ids are in order of frequency, so the head
    holds the frequent words (89.2% of the short-Yelp pool's words, as
    ``benchmarks/bench_softmax.py`` prints)."""
    cutoffs = [c for c in sorted({min(1000, vocab_size // 4), min(4000, vocab_size // 2)})
               if 0 < c < vocab_size - 1]
    if not cutoffs:
        raise ValueError(f"An adaptive softmax needs a vocabulary of at least 3 tokens, got {vocab_size}.")
    return cutoffs


# nn.AdaptiveLogSoftmaxWithLoss's own forward computes its log-softmaxes in the dtype of
# its linear layers, bf16 under autocast, and then fails mixing them with fp32.
def adaptive_log_probs(softmax: nn.AdaptiveLogSoftmaxWithLoss, hidden):
    """Log-probabilities over the whole vocabulary: (rows, hidden) -> (rows, vocab), fp32."""
    head = F.log_softmax(softmax.head(hidden).float(), -1)        # (rows, shortlist + clusters)
    shortlist = softmax.shortlist_size
    parts = [head[:, :shortlist]]
    for i, cluster in enumerate(softmax.tail):
        parts.append(F.log_softmax(cluster(hidden).float(), -1) + head[:, shortlist + i:shortlist + i + 1])
    return torch.cat(parts, -1)


def adaptive_nll(softmax: nn.AdaptiveLogSoftmaxWithLoss, hidden, targets):
    """-log p(target) per row, computing each tail cluster only on the rows whose
    target is in it: (rows, hidden), (rows,) -> (rows,), fp32."""
    head = F.log_softmax(softmax.head(hidden).float(), -1)        # (rows, shortlist + clusters)
    head_index = targets.clone()
    in_cluster = torch.zeros(targets.shape, dtype=head.dtype, device=targets.device)
    bounds = softmax.cutoffs                                      # [shortlist, ..., vocab]
    for i, cluster in enumerate(softmax.tail):
        rows = ((targets >= bounds[i]) & (targets < bounds[i + 1])).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        head_index[rows] = softmax.shortlist_size + i
        log_probs = F.log_softmax(cluster(hidden[rows]).float(), -1)
        picked = log_probs.gather(1, (targets[rows] - bounds[i]).unsqueeze(1)).squeeze(1)
        in_cluster = in_cluster.index_copy(0, rows, picked)
    return -(head.gather(1, head_index.unsqueeze(1)).squeeze(1) + in_cluster)
