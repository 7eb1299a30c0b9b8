"""TextVAE: output shapes, the frozen-scale batch norm, padding, KL."""

import pytest
import torch
from torch import nn

from ssl_textvae.nn.model import MeanBatchNorm, gaussian_kl, sample_gaussian
from ssl_textvae.text.tokenization import BOS_ID, EOS_ID, PAD_ID

from conftest import text_vae

VOCAB, LATENT = 20, 4


def make_batch():
    # Two texts of 3 and 5 words: [<s> w.. </s> <pad>..], lengths counting <s> and </s>.
    tokens = torch.tensor([[BOS_ID, 5, 6, 7, EOS_ID, PAD_ID, PAD_ID],
                           [BOS_ID, 8, 9, 10, 11, 12, EOS_ID],
                           [BOS_ID, 13, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
    return tokens, torch.tensor([5, 7, 3])


def make_module(gamma=0.7, **kwargs):
    torch.manual_seed(0)
    return text_vae(VOCAB, embed_dim=8, hidden_dim=16, latent_dim=LATENT, gamma=gamma, **kwargs)


def test_forward_shapes():
    tokens, lengths = make_batch()
    terms = make_module()(tokens, lengths, n_samples=3)
    assert terms["reconstruction"].shape == (3,)
    assert terms["kl"].shape == (3,)
    assert terms["kl_per_dim"].shape == (3, LATENT)
    assert terms["mean"].shape == terms["logvar"].shape == (3, LATENT)
    assert (terms["reconstruction"] > 0).all() and (terms["kl_per_dim"] >= 0).all()
    torch.testing.assert_close(terms["kl"], terms["kl_per_dim"].sum(1))


def test_reconstruction_nll_shape_with_samples():
    tokens, lengths = make_batch()
    module = make_module().eval()
    z = torch.randn(3, 5, LATENT)
    assert module.decoder.reconstruction_nll(tokens, lengths, z).shape == (3, 5)


def test_sample_gaussian_shape_and_zero_variance():
    mean = torch.randn(4, LATENT)
    z = sample_gaussian(mean, torch.full((4, LATENT), -80.0), 6)
    assert z.shape == (4, 6, LATENT)
    torch.testing.assert_close(z, mean.unsqueeze(1).expand_as(z))


@pytest.mark.parametrize("gamma", [0, 0.0, None])
def test_no_batch_norm_without_gamma(gamma):
    module = make_module(gamma=gamma)
    assert isinstance(module.mean_norm, nn.Identity)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in module.modules())


def test_batch_norm_scale_is_frozen_at_gamma_and_shift_is_learned():
    module = make_module(gamma=0.6)
    assert isinstance(module.mean_norm, MeanBatchNorm)
    norm = module.mean_norm.norm
    assert not norm.weight.requires_grad and norm.bias.requires_grad
    torch.testing.assert_close(norm.weight.detach(), torch.full((LATENT,), 0.6))
    bias_before = norm.bias.detach().clone()
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1.0)
    tokens, lengths = make_batch()
    terms = module(tokens, lengths)
    (terms["reconstruction"] + terms["kl"]).mean().backward()
    optimizer.step()
    torch.testing.assert_close(norm.weight.detach(), torch.full((LATENT,), 0.6))
    assert not torch.equal(norm.bias.detach(), bias_before)


def test_batch_norm_scale_survives_an_optimizer_over_all_parameters():
    # Adam or SGD with weight decay built over module.parameters() must not move the scale.
    module = make_module(gamma=0.6)
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.1, weight_decay=0.5)
    tokens, lengths = make_batch()
    terms = module(tokens, lengths)
    (terms["reconstruction"] + terms["kl"]).mean().backward()
    optimizer.step()
    torch.testing.assert_close(module.mean_norm.norm.weight.detach(), torch.full((LATENT,), 0.6))


def test_train_mode_means_have_gamma_scale_per_dimension():
    module = make_module(gamma=0.5).train()
    # The tiny initial weights give a pre-BN variance of ~1e-10, close enough to eps to
    # shift the scale by percents; trained encoders are far above it.
    with torch.no_grad():
        module.encoder.to_posterior.weight.normal_()
    tokens = torch.randint(4, VOCAB, (64, 6))
    mean, _ = module.posterior(tokens, torch.full((64,), 6))
    # Biased batch variance of each dimension is gamma^2 (bias starts at 0).
    torch.testing.assert_close(mean.var(0, unbiased=False), torch.full((LATENT,), 0.25),
                               rtol=1e-3, atol=1e-4)


def test_reconstruction_ignores_padding():
    module = make_module().eval()
    tokens, lengths = make_batch()
    z = torch.randn(1, 1, LATENT)
    alone = module.decoder.reconstruction_nll(tokens[2:3, :3], lengths[2:3], z)
    padded = module.decoder.reconstruction_nll(tokens, lengths, z.expand(3, 1, LATENT))
    torch.testing.assert_close(padded[2], alone[0])
    # and the encoder reads each text up to its own end
    mean_alone, logvar_alone = module.posterior(tokens[2:3, :3], lengths[2:3])
    mean_padded, logvar_padded = module.posterior(tokens, lengths)
    torch.testing.assert_close(mean_padded[2], mean_alone[0])
    torch.testing.assert_close(logvar_padded[2], logvar_alone[0])


def test_reconstruction_is_a_sum_of_token_terms():
    # One more word adds a positive term: NLL grows with the number of predicted tokens.
    module = make_module().eval()
    z = torch.zeros(1, 1, LATENT)
    short = torch.tensor([[BOS_ID, 5, EOS_ID]])
    long = torch.tensor([[BOS_ID, 5, 5, EOS_ID]])
    nll_short = module.decoder.reconstruction_nll(short, torch.tensor([3]), z)
    nll_long = module.decoder.reconstruction_nll(long, torch.tensor([4]), z)
    assert nll_long.item() > nll_short.item() > 0
    # near-uniform output at initialization: about log(vocab) nats per predicted token
    assert nll_short.item() == pytest.approx(2 * torch.log(torch.tensor(VOCAB)).item(), rel=0.05)


def test_gaussian_kl_is_zero_at_the_prior():
    zeros = torch.zeros(3, LATENT)
    torch.testing.assert_close(gaussian_kl(zeros, zeros), zeros)


def test_gaussian_kl_matches_torch_distributions():
    mean, logvar = torch.randn(5, LATENT), torch.randn(5, LATENT)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    torch.testing.assert_close(gaussian_kl(mean, logvar),
                               torch.distributions.kl_divergence(posterior, prior))
