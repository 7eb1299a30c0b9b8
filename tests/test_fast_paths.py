"""The fast paths keep their meaning: vectorized gathers equal the plain loops, and
denormals are flushed on every intra-op thread, not only the calling one."""

import numpy as np
import pytest
import torch

from ssl_textvae.runtime import devices as runtime
from ssl_textvae.text.data import EncodedCorpus, collate
from ssl_textvae.text.tokenization import BOS_ID, EOS_ID, PAD_ID


def _random_corpus(n=200, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 15, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return EncodedCorpus(rng.integers(4, 100, offsets[-1]).astype(np.int32), offsets), rng


def test_subset_equals_loop_gather():
    corpus, rng = _random_corpus()
    indices = rng.permutation(len(corpus))[:77]
    subset = corpus.subset(indices)
    expected = np.concatenate([corpus.ids[corpus.offsets[i]:corpus.offsets[i + 1]] for i in indices])
    np.testing.assert_array_equal(subset.ids, expected)
    np.testing.assert_array_equal(subset.lengths, corpus.lengths[indices])
    assert subset.ids.dtype == np.int32
    empty = corpus.subset([])
    assert len(empty) == 0 and len(empty.ids) == 0


def test_collate_rows():
    corpus, rng = _random_corpus(seed=1)
    indices = rng.permutation(len(corpus))[:16]
    tokens, lengths = collate(corpus, indices)
    assert tokens.shape == (16, int(corpus.lengths[indices].max()) + 2)
    for row, index in enumerate(indices):
        words = corpus.ids[corpus.offsets[index]:corpus.offsets[index + 1]]
        n = len(words)
        assert lengths[row] == n + 2
        assert tokens[row, 0] == BOS_ID and tokens[row, n + 1] == EOS_ID
        np.testing.assert_array_equal(tokens[row, 1:n + 1].numpy(), words)
        assert (tokens[row, n + 2:] == PAD_ID).all()


@pytest.mark.skipif(runtime._omp_parallel() is None, reason="torch is not linked to an OpenMP runtime")
def test_flush_denormals_reaches_every_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        denormal = torch.full((1 << 18,), 1e-40)  # 2 threads split this elementwise product
        assert (denormal * 1.0).ne(0).all()
        with runtime.flush_denormals():
            with runtime.flush_denormals():
                pass
            assert (denormal * 1.0).eq(0).all()  # nested exit keeps it on, on all threads
        assert (denormal * 1.0).ne(0).all()      # and the outer exit turns it off again
    finally:
        torch.set_num_threads(threads)
