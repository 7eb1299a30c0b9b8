"""Batched inference in torch only: eval mode, precision, encoding in corpus order.

Every pass that runs a model over a corpus without training it goes through
here: ``transform`` of the estimators, the validation passes of pretraining and
fine-tuning, the batch-norm recalibration and the metrics. Batches are sorted by
length (no padding waste) and results are put back in corpus order. The CPU
threads follow the free CPUs (:func:`ssl_textvae.runtime.threads.cpu_threads`).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..text.data import EncodedCorpus, bucket_batches, collate
from ..runtime.devices import autocast_context, flush_denormals
from ..runtime.threads import cpu_threads

# On 2 CPU cores faster than 1024 (the LSTM's per-step state stays in cache):
# benchmarks/bench_encode.py --batch-sizes 256 1024
ENCODE_BATCH_SIZE = 256


@contextlib.contextmanager
def eval_mode(module):
    """Eval mode (batch norm on running statistics, no dropout), no autograd and
    denormals flushed; the module's previous mode is restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), flush_denormals():
            yield
    finally:
        module.train(was_training)


def batches(corpus: EncodedCorpus, batch_size: int, device):
    """``(indices, inputs)`` per batch of texts of (nearly) equal length, in a fixed order:
    ``inputs`` is :func:`~ssl_textvae.text.data.collate`'s tuple on ``device`` (``tokens``
    (batch, max_len + 2), ``lengths`` (batch,), and a pretrained encoder's inputs where
    the corpus has them), for ``module(*inputs)``. ``indices`` are the rows of ``corpus``
    the batch holds."""
    for indices in bucket_batches(corpus.lengths, batch_size, shuffle=False):
        yield indices, tuple(t.to(device) for t in collate(corpus, indices))


def run_batched(module, corpus: EncodedCorpus, device, function, width, *, precision="fp32",
                batch_size=ENCODE_BATCH_SIZE, dtype=np.float32) -> np.ndarray:
    """``function(*inputs)`` -> (batch, width) over every text of ``corpus`` with
    ``module`` in eval mode, under ``precision`` ("fp32", "bf16" or "auto"): a numpy
    array (n_texts, width) of ``dtype``, row i for text i."""
    out = np.zeros((len(corpus), width), dtype=dtype)
    cast = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    with cpu_threads(device) as threads, eval_mode(module):
        for indices, inputs in batches(corpus, batch_size, device):
            with autocast_context(device, precision):
                values = function(*inputs)                             # (batch, width)
            out[indices] = values.to(cast).cpu().numpy()
            threads.step()
    return out


def encode_means(module, corpus: EncodedCorpus, device, batch_size=ENCODE_BATCH_SIZE,
                 precision="fp32") -> np.ndarray:
    """Posterior means (after the batch norm) of every text of a ``TextVAE``: float32
    array (n_texts, latent_dim) in corpus order."""
    return run_batched(module, corpus, device, lambda *inputs: module.posterior(*inputs)[0],
                       module.latent_dim, precision=precision, batch_size=batch_size)


def encode_posteriors(module, corpus: EncodedCorpus, device, batch_size=1024):
    """Means (after the batch norm) and log-variances of q(z|x) for every text, in
    corpus order, as two float64 tensors (n_texts, latent_dim) on the CPU (fp32 forward)."""
    both = run_batched(module, corpus, device,
                       lambda *inputs: torch.cat(module.posterior(*inputs), 1),
                       2 * module.latent_dim, batch_size=batch_size, dtype=np.float64)
    both = torch.from_numpy(both)
    return both[:, :module.latent_dim].contiguous(), both[:, module.latent_dim:].contiguous()
