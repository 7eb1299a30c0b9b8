"""The CPU update step (clipping folded into SGD, bf16 working weights) and the CPU dropout."""

import copy

import pytest
import torch

from ssl_textvae.nn.model import Dropout
from ssl_textvae.nn import optim
from ssl_textvae.nn.optim import ClippedSGD

from conftest import text_vae


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    module = text_vae(30, embed_dim=8, hidden_dim=16, latent_dim=4, gamma=0.5, dropout_in=0.0,
                      dropout_out=0.0)
    tokens = torch.randint(4, 30, (6, 7))
    tokens[:, 0], tokens[:, -1] = 1, 2
    return module, tokens, torch.full((6,), 7)


def _loss(module, tokens, lengths, bf16):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        terms = module(tokens, lengths)
    return (terms["reconstruction"] + terms["kl"]).mean()


def _reference_step(module, tokens, lengths, max_norm, bf16, lr):
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    torch.manual_seed(1)
    _loss(module, tokens, lengths, bf16).backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    optimizer.step()


def _clipped_step(module, tokens, lengths, max_norm, bf16, lr):
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    with ClippedSGD(module, optimizer, max_norm, bf16_weights=bf16) as update:
        update.zero_grad()
        torch.manual_seed(1)
        _loss(module, tokens, lengths, bf16).backward()
        update.step()


@pytest.mark.parametrize("max_norm", [0.05, 1e6])   # clipping active, and inactive
def test_fp32_step_equals_clip_grad_norm_then_sgd(max_norm):
    module, tokens, lengths = _model_and_batch()
    reference = copy.deepcopy(module)
    _reference_step(reference, tokens, lengths, max_norm, bf16=False, lr=0.5)
    _clipped_step(module, tokens, lengths, max_norm, bf16=False, lr=0.5)
    for (name, expected), actual in zip(reference.named_parameters(), module.parameters()):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.bf16
def test_bf16_step_matches_autocast_step_and_restores_fp32_weights():
    module, tokens, lengths = _model_and_batch()
    before = copy.deepcopy(module)
    reference = copy.deepcopy(module)
    _reference_step(reference, tokens, lengths, 0.05, bf16=True, lr=0.5)
    _clipped_step(module, tokens, lengths, 0.05, bf16=True, lr=0.5)
    for (name, expected), actual, old in zip(reference.named_parameters(), module.parameters(),
                                             before.parameters()):
        assert actual.dtype == torch.float32, name         # the masters are back after the epoch
        change, expected_change = actual - old, expected - old
        # the same update up to the bf16 rounding of the gradient norm
        torch.testing.assert_close(change, expected_change, rtol=1e-2, atol=1e-6, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(module.parameters(), before.parameters()))


def test_bf16_working_weights_only_inside_the_context():
    module, _, _ = _model_and_batch()
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    with ClippedSGD(module, optimizer, 5.0, bf16_weights=True):
        assert module.decoder.output.weight.dtype == torch.bfloat16
        assert module.encoder.lstm.weight_hh_l0.dtype == torch.bfloat16
        assert module.encoder.embedding.weight.dtype == torch.float32   # autocast leaves these
        assert module.mean_norm.norm.bias.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_refuses_momentum():
    module, _, _ = _model_and_batch()
    with pytest.raises(ValueError, match="plain SGD"):
        ClippedSGD(module, torch.optim.SGD(module.parameters(), lr=1.0, momentum=0.9), 5.0, False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_zeroes_a_fraction_p_and_keeps_the_mean(dtype):
    torch.manual_seed(0)
    dropout = Dropout(0.3).train()
    inputs = torch.ones(200, 500, dtype=dtype, requires_grad=True)
    outputs = dropout(inputs)
    assert outputs.dtype == dtype
    dropped = (outputs == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.01
    assert abs(outputs.float().mean().item() - 1.0) < 0.02
    outputs.sum().backward()
    torch.testing.assert_close(inputs.grad.float(), outputs.detach().float())   # same mask, same scale
    assert torch.equal(dropout.eval()(inputs), inputs)


def test_embeddings_have_sparse_gradients_only_inside_the_context():
    module, tokens, lengths = _model_and_batch()
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    with ClippedSGD(module, optimizer, 5.0, bf16_weights=False) as update:
        _loss(module, tokens, lengths, False).backward()
        assert module.encoder.embedding.weight.grad.is_sparse
        update.step()
    assert not module.encoder.embedding.sparse and not module.decoder.embedding.sparse


def _two_clipped_steps(module, tokens, lengths):
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    with ClippedSGD(module, optimizer, 0.05, bf16_weights=True) as update:
        for seed in (1, 2):   # the second step runs on the working copies the first one refreshed
            update.zero_grad()
            torch.manual_seed(seed)
            _loss(module, tokens, lengths, True).backward()
            update.step()
            for working, master in update.masters.items():   # the working copies follow the masters
                assert torch.equal(working, master.to(torch.bfloat16))


@pytest.mark.bf16
def test_master_update_in_pieces_equals_the_whole_tensor_update(monkeypatch):
    module, tokens, lengths = _model_and_batch()
    whole = copy.deepcopy(module)
    _two_clipped_steps(whole, tokens, lengths)
    monkeypatch.setattr(optim, "UPDATE_CHUNK", 7)        # pieces smaller than every weight, uneven
    _two_clipped_steps(module, tokens, lengths)
    for (name, expected), actual in zip(whole.named_parameters(), module.parameters()):
        assert torch.equal(actual, expected), name
