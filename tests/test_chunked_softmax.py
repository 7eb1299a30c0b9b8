"""The full softmax's loss in chunks of tokens: the same losses and gradients as the
single matrix, and never more than ``max_chunk_logits`` logits at once."""

import pytest
import torch
from torch.nn import functional as F

from ssl_textvae import BNVAE
from ssl_textvae.model import MAX_CHUNK_LOGITS, TextVAE

from conftest import TINY, make_corpus

VOCAB = 53


def batch(seed=0, n_texts=6, length=12):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, length + 1, (n_texts,), generator=generator)
    tokens = torch.zeros(n_texts, length + 2, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        tokens[row, 0] = 1
        tokens[row, 1:n + 1] = torch.randint(4, VOCAB, (n,), generator=generator)
        tokens[row, n + 1] = 2
    return tokens, lengths + 2


def loss_and_gradients(max_chunk_logits, bf16=False, seed=0):
    torch.manual_seed(0)
    module = TextVAE(VOCAB, 16, 24, 4, gamma=0.7, dropout_in=0.0, dropout_out=0.0,
                     max_chunk_logits=max_chunk_logits)
    tokens, lengths = batch(seed)
    torch.manual_seed(1)   # the same z sample
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        terms = module(tokens, lengths)
    loss = (terms["reconstruction"] + terms["kl"]).mean()
    loss.backward()
    return terms["reconstruction"].detach(), {name: p.grad.clone() for name, p in
                                              module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tokens_per_chunk", [1, 7, 20])
def test_chunked_loss_and_gradients_equal_the_single_matrix_in_fp32(tokens_per_chunk):
    whole_loss, whole_grads = loss_and_gradients(None)
    chunk_loss, chunk_grads = loss_and_gradients(tokens_per_chunk * VOCAB)
    assert torch.equal(chunk_loss, whole_loss)
    assert chunk_grads.keys() == whole_grads.keys()
    for name in whole_grads:   # the output layer's gradient is summed over chunks: rounding only
        torch.testing.assert_close(chunk_grads[name], whole_grads[name], rtol=1e-5, atol=1e-7,
                                   msg=name)


@pytest.mark.parametrize("tokens_per_chunk", [7, 20])
def test_chunked_loss_and_gradients_under_bf16(tokens_per_chunk):
    whole_loss, whole_grads = loss_and_gradients(None, bf16=True)
    chunk_loss, chunk_grads = loss_and_gradients(tokens_per_chunk * VOCAB, bf16=True)
    assert torch.equal(chunk_loss, whole_loss)
    for name in whole_grads:
        if name.startswith("decoder.output."):
            # summed over chunks in bf16: one bf16 rounding per chunk (a few, in practice)
            error = (chunk_grads[name] - whole_grads[name]).abs().max()
            assert error <= 0.01 * whole_grads[name].abs().max(), name
        else:   # everything before the output layer is bit for bit the same
            assert torch.equal(chunk_grads[name], whole_grads[name]), name


def test_no_more_logits_than_the_bound_exist_at_once(monkeypatch):
    shapes = []
    real = F.cross_entropy

    def recording(logits, *args, **kwargs):
        shapes.append(tuple(logits.shape))
        return real(logits, *args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", recording)
    loss_and_gradients(5 * VOCAB)
    assert shapes and max(rows for rows, _ in shapes) <= 5
    assert len(shapes) > 2 * 10   # forward and the backward's recomputation, chunk by chunk
    shapes.clear()
    with torch.no_grad():   # evaluation: chunked, nothing to recompute
        module = TextVAE(VOCAB, 16, 24, 4, max_chunk_logits=5 * VOCAB).eval()
        module(*batch())
    assert max(rows for rows, _ in shapes) <= 5


def test_small_batches_take_the_single_matrix_path(monkeypatch):
    calls = []
    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda logits, *a, **k: calls.append(logits.shape) or
                        real(logits, *a, **k))
    loss_and_gradients(None)
    assert len(calls) == 1 and MAX_CHUNK_LOGITS // VOCAB > calls[0][0]


def test_training_with_chunks_matches_training_without():
    texts = make_corpus(80, seed=4)[0]
    whole = BNVAE(**dict(TINY, max_epochs=1, precision="fp32")).fit(texts)
    import ssl_textvae.model as model

    saved = model.MAX_CHUNK_LOGITS
    model.MAX_CHUNK_LOGITS = 7 * 40   # a handful of tokens per chunk for the tiny vocabulary
    try:
        chunked = BNVAE(**dict(TINY, max_epochs=1, precision="fp32")).fit(texts)
    finally:
        model.MAX_CHUNK_LOGITS = saved
    assert chunked.module_.decoder.max_chunk_logits == 7 * 40
    # Losses only: after one epoch the pre-batch-norm variance of the means is tiny, and
    # batch norm magnifies rounding differences (here 1e-7 in the output layer's
    # gradient) by its inverse square root in the encoder's weights and means.
    for key in ("train_loss", "valid_loss", "valid_kl"):
        assert chunked.history_[0][key] == pytest.approx(whole.history_[0][key], rel=1e-3)
