"""The full softmax's loss in chunks of tokens: the same losses and gradients as the
single matrix, and never more than ``max_chunk_logits`` logits at once."""

import pytest
import torch
from torch.nn import functional as F

from ssl_textvae import BNVAE
from ssl_textvae.nn.model import MAX_CHUNK_LOGITS

from conftest import TINY, make_corpus, text_vae

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
    module = text_vae(VOCAB, embed_dim=16, hidden_dim=24, latent_dim=4, gamma=0.7, dropout_in=0.0,
                      dropout_out=0.0, max_chunk_logits=max_chunk_logits)
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


@pytest.mark.bf16
@pytest.mark.parametrize("tokens_per_chunk", [7, 20])
def test_chunked_loss_and_gradients_under_bf16(tokens_per_chunk):
    fp32_loss, fp32_grads = loss_and_gradients(None)
    whole_loss, whole_grads = loss_and_gradients(None, bf16=True)
    chunk_loss, chunk_grads = loss_and_gradients(tokens_per_chunk * VOCAB, bf16=True)
    assert torch.equal(chunk_loss, whole_loss)
    for name in whole_grads:
        # bf16 rounds the gradients at other places (and the single matrix pads its rows,
        # which may pick other kernels): the chunked gradient is about as close to fp32 as
        # the single matrix's bf16 gradient is, within twice that rounding
        chunked = (chunk_grads[name] - fp32_grads[name]).abs().max()
        bf16 = (whole_grads[name] - fp32_grads[name]).abs().max()
        assert chunked <= 2 * bf16 + 1e-7, name


def test_no_more_logits_than_the_bound_exist_at_once(monkeypatch):
    shapes = []
    for name in ("cross_entropy", "log_softmax", "softmax"):
        real = getattr(F, name)
        monkeypatch.setattr(F, name, lambda logits, *a, _real=real, **k:
                            shapes.append(tuple(logits.shape)) or _real(logits, *a, **k))
    loss_and_gradients(5 * VOCAB)
    assert shapes and max(rows for rows, _ in shapes) <= 5
    assert len(shapes) >= 10   # the chunks of the forward pass (the gradients come with them)
    shapes.clear()
    with torch.no_grad():   # evaluation: chunked, no gradients formed
        module = text_vae(VOCAB, embed_dim=16, hidden_dim=24, latent_dim=4, max_chunk_logits=5 * VOCAB).eval()
        module(*batch())
    assert shapes and max(rows for rows, _ in shapes) <= 5


def test_uneven_token_weights_get_exact_gradients():
    """A loss that weights tokens unevenly takes the recomputing backward path."""
    from ssl_textvae.nn.model import ChunkedSoftmaxNLL

    torch.manual_seed(0)
    hidden = torch.randn(23, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(VOCAB, 8, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(VOCAB, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, VOCAB, (23,))
    token_weights = torch.rand(23, dtype=torch.float64)
    chunked = (ChunkedSoftmaxNLL.apply(hidden, weight, bias, targets, 4).double() * token_weights).sum()
    grads = torch.autograd.grad(chunked, (hidden, weight, bias))
    whole = (F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="none")
             * token_weights).sum()
    expected = torch.autograd.grad(whole, (hidden, weight, bias))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


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
    import ssl_textvae.nn.model as model

    saved = model.MAX_CHUNK_LOGITS
    model.MAX_CHUNK_LOGITS = 7 * 40   # a handful of tokens per chunk for the tiny vocabulary
    try:
        chunked = BNVAE(**dict(TINY, max_epochs=1, precision="fp32")).fit(texts)
    finally:
        model.MAX_CHUNK_LOGITS = saved
    assert chunked.module_.decoder.max_chunk_logits == 7 * 40
    # Not the KL or the means: after one epoch the pre-batch-norm variance of the means
    # is tiny, and batch norm magnifies rounding differences (here 1e-9 in the
    # gradients) by its inverse square root.
    for key in ("train_loss", "valid_reconstruction"):
        assert chunked.history_[0][key] == pytest.approx(whole.history_[0][key], rel=1e-4)
