"""Language-model metrics on cases with a known answer, and the evaluate entry points."""

import math

import numpy as np
import pytest
import torch

from ssl_textvae import BNVAE
from ssl_textvae.engine.metrics import (active_units, evaluate, evaluate_elbo, iw_nll, kl_per_dimension,
                                 mutual_information, perplexity)
from ssl_textvae.runtime.devices import resolve_device

from conftest import make_corpus

CPU = resolve_device("cpu")


@pytest.fixture(scope="module")
def held_out():
    return make_corpus(120, seed=3)[0]


def test_posterior_equal_to_prior_has_zero_kl_mi_and_active_units():
    means, logvars = torch.zeros(200, 6, dtype=torch.float64), torch.zeros(200, 6, dtype=torch.float64)
    np.testing.assert_array_equal(kl_per_dimension(means, logvars), np.zeros(6))
    assert abs(mutual_information(means, logvars, random_state=0)) < 1e-9
    assert active_units(means) == 0


def test_same_posterior_for_every_text_has_zero_mi_even_away_from_the_prior():
    means = torch.full((100, 4), 2.0, dtype=torch.float64)
    logvars = torch.full((100, 4), -1.0, dtype=torch.float64)
    assert abs(mutual_information(means, logvars, random_state=0)) < 1e-9
    # KL(N(2, e^-1) || N(0, 1)) per dimension, in closed form
    expected = 0.5 * (4.0 + math.exp(-1.0) + 1.0 - 1.0)
    np.testing.assert_allclose(kl_per_dimension(means, logvars), expected)


def test_separated_posteriors_have_mi_log_n():
    # Every text has its own sharp posterior: z identifies x, so I(x; z) = log n.
    n = 50
    means = torch.arange(n, dtype=torch.float64).unsqueeze(1).repeat(1, 3) * 10
    logvars = torch.full((n, 3), -6.0, dtype=torch.float64)
    assert mutual_information(means, logvars, random_state=0) == pytest.approx(math.log(n), abs=1e-6)


def test_mutual_information_does_not_depend_on_the_chunk_size():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(70, 5, generator=generator, dtype=torch.float64)
    logvars = -torch.rand(70, 5, generator=generator, dtype=torch.float64)
    full = mutual_information(means, logvars, random_state=1, chunk_size=1000)
    chunked = mutual_information(means, logvars, random_state=1, chunk_size=7)
    assert chunked == pytest.approx(full, rel=1e-9)
    assert 0 < full < math.log(70)


def test_active_units_counts_dimensions_with_variance_above_threshold():
    means = torch.zeros(100, 3)
    means[:, 0] = torch.linspace(-1, 1, 100)        # variance about 0.34: active
    means[:, 1] = torch.linspace(-0.1, 0.1, 100)    # variance about 0.0034: inactive
    assert active_units(means) == 1


def test_perplexity_formula_counts_end_of_sentence():
    # 5 texts with 9 words each: 50 predicted tokens with </s>; NLL 10 nats per text
    assert perplexity(10.0, 5, 50) == pytest.approx(math.e)
    with pytest.raises(ValueError, match="n_tokens must be positive"):
        perplexity(1.0, 1, 0)


def test_iw_nll_with_one_sample_is_the_negative_elbo_in_expectation(trained_vae, held_out):
    corpus = trained_vae.encode(held_out)
    module = trained_vae.module_
    iw = np.mean([iw_nll(module, corpus, CPU, n_samples=1, random_state=seed).mean()
                  for seed in range(8)])
    torch.manual_seed(0)
    elbo = np.mean([evaluate_elbo(module, corpus, CPU)["loss"] for _ in range(8)])
    assert iw == pytest.approx(elbo, rel=0.01)


def test_iw_nll_decreases_with_more_samples_on_a_trained_model(trained_vae, held_out):
    corpus = trained_vae.encode(held_out)
    one = iw_nll(trained_vae.module_, corpus, CPU, n_samples=1, random_state=0).mean()
    many = iw_nll(trained_vae.module_, corpus, CPU, n_samples=20, chunk_size=6, random_state=0).mean()
    assert many < one - 0.05


def test_iw_nll_rejects_a_bad_number_of_samples(trained_vae, held_out):
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        iw_nll(trained_vae.module_, trained_vae.encode(held_out), CPU, n_samples=0)


def test_evaluate_returns_consistent_metrics_and_prints_a_table(trained_vae, held_out, capsys):
    results = trained_vae.evaluate(held_out, n_importance_samples=5)
    table = capsys.readouterr().out
    assert "IW-NLL per text (k=5)" in table and "active units" in table
    assert results["n_texts"] == len(held_out)
    assert results["n_tokens"] == sum(len(t.split()) + 1 for t in held_out)
    assert results["neg_elbo"] == pytest.approx(results["reconstruction"] + results["kl"])
    assert sum(results["kl_per_dim"]) == pytest.approx(results["kl"], rel=1e-4)
    assert results["perplexity"] == pytest.approx(
        math.exp(results["iw_nll"] * results["n_texts"] / results["n_tokens"]))
    assert results["active_units"] == results["latent_dim"] == 8
    assert 0 < results["mutual_information"] <= math.log(len(held_out))
    # BN-VAE: the expected KL is at least latent_dim * gamma^2 / 2
    assert results["kl"] >= 0.9 * 8 * 0.7**2 / 2


def test_evaluate_takes_a_module_with_an_encoded_corpus(trained_vae, held_out):
    corpus = trained_vae.encode(held_out)
    from_module = evaluate(trained_vae.module_, corpus, n_importance_samples=3, verbose=0)
    from_estimator = trained_vae.evaluate(held_out, n_importance_samples=3, verbose=0)
    assert from_module["iw_nll"] == pytest.approx(from_estimator["iw_nll"])
    with pytest.raises(TypeError, match="must be an EncodedCorpus"):
        evaluate(trained_vae.module_, held_out, verbose=0)
    with pytest.raises(TypeError, match=r"Expected a TextVAE module, got BNVAE.*vae.evaluate\(texts\)"):
        evaluate(trained_vae, corpus, verbose=0)   # torch objects only: the estimator encodes
