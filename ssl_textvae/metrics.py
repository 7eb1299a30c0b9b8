"""Language-model metrics of a text VAE, in torch only, always in eval mode.

Definitions follow He et al. (2019) and Zhu et al. (2020): active units are the
latent dimensions whose posterior mean varies across the data by more than 0.01.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .data import EncodedCorpus, bucket_batches, collate
from .runtime import autocast_context, flush_denormals

ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of dimensions with Var_x(E_q[z|x]) above ``threshold``; means: (n, latent)."""
    if means.size(0) < 2:
        return 0
    return int((means.double().var(0) > threshold).sum())


@contextlib.contextmanager
def eval_mode(module):
    """Eval mode (batch norm on running statistics, no dropout) and no autograd,
    restoring the module's previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), flush_denormals():
            yield
    finally:
        module.train(was_training)


def _batches(corpus: EncodedCorpus, batch_size):
    # Sorted by length: no padding waste; results are put back in corpus order.
    for indices in bucket_batches(corpus.lengths, batch_size, shuffle=False):
        yield indices, collate(corpus, indices)


def encode_means(module, corpus: EncodedCorpus, device, batch_size=1024, precision="fp32"):
    """Posterior means (after batch norm) of every text, as a float32 numpy array (n, latent)."""
    out = np.zeros((len(corpus), module.latent_dim), dtype=np.float32)
    with eval_mode(module):
        for indices, (tokens, lengths) in _batches(corpus, batch_size):
            with autocast_context(device, precision):
                mean, _ = module.posterior(tokens.to(device), lengths.to(device))
            out[indices] = mean.float().cpu().numpy()
    return out


def evaluate_elbo(module, corpus: EncodedCorpus, device, batch_size=256, precision="fp32"):
    """Negative ELBO per text (one z sample), its reconstruction and KL terms, and
    the active units, all in eval mode."""
    sums = np.zeros(2)
    means = []
    with eval_mode(module):
        for _, (tokens, lengths) in _batches(corpus, batch_size):
            with autocast_context(device, precision):
                terms = module(tokens.to(device), lengths.to(device))
            sums += [terms["reconstruction"].sum().item(), terms["kl"].sum().item()]
            means.append(terms["mean"].float().cpu())
    reconstruction, kl = sums / max(len(corpus), 1)
    return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl,
            "active_units": active_units(torch.cat(means)) if means else 0}
