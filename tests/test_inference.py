"""The one batched-inference path: corpus order, eval mode restored, precision."""

import numpy as np
import torch

from ssl_textvae.text.data import EncodedCorpus
from ssl_textvae.nn.inference import encode_means, encode_posteriors, run_batched

from conftest import text_vae


def _corpus(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 30, int(sum(lengths))).astype(np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EncodedCorpus(ids, offsets)


def test_run_batched_returns_rows_in_corpus_order_and_restores_training_mode():
    torch.manual_seed(0)
    module = text_vae(30, embed_dim=8, hidden_dim=16, latent_dim=4, gamma=0.5)
    corpus = _corpus([5, 1, 3, 7, 2, 2, 6, 1, 4])   # lengths out of order: batches are sorted
    module.train()
    means = encode_means(module, corpus, torch.device("cpu"), batch_size=2)
    assert module.training
    one_by_one = np.vstack([encode_means(module, corpus.subset([i, i]), torch.device("cpu"))[:1]
                            for i in range(len(corpus))])
    np.testing.assert_allclose(means, one_by_one, rtol=1e-5, atol=1e-6)
    lengths = run_batched(module, corpus, torch.device("cpu"),
                          lambda tokens, lengths: lengths[:, None].float(), 1, batch_size=3)
    np.testing.assert_array_equal(lengths[:, 0], corpus.lengths + 2)


def test_encode_posteriors_means_match_encode_means():
    torch.manual_seed(1)
    module = text_vae(30, embed_dim=8, hidden_dim=16, latent_dim=4, gamma=0.5).eval()
    corpus = _corpus([3, 4, 5, 3, 2])
    means, logvars = encode_posteriors(module, corpus, torch.device("cpu"))
    assert means.dtype == logvars.dtype == torch.float64 and means.shape == logvars.shape == (5, 4)
    np.testing.assert_allclose(means.numpy(), encode_means(module, corpus, torch.device("cpu")),
                               rtol=1e-6, atol=1e-6)
