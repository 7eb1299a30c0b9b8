"""Divergence is never silent: a non-finite loss stops pretraining with an error that
says where and what to do, ``transform`` never returns NaN, ``gamma`` must be finite."""

import math

import numpy as np
import pytest
import torch

from ssl_textvae import BNVAE, BNVAEClassifier, TrainingDivergedError

from conftest import TINY, make_corpus

PARAMS = dict(TINY, max_epochs=2)


@pytest.fixture(scope="module")
def texts():
    return make_corpus(120, seed=5)[0]


@pytest.mark.parametrize("params", [dict(lr=1e9), dict(lr=1e9, clip_grad_norm=None),
                                    dict(optimizer="adam", lr=1e9), dict(lr=1e9, precision="fp32")])
def test_huge_learning_rate_stops_with_a_clear_error(texts, params):
    with pytest.raises(TrainingDivergedError, match=r"diverged: .* in epoch \d+, batch \d+ of \d+ "
                       r"\(optimizer step \d+\)\. The learning rate is 1e\+09.*smaller lr"):
        BNVAE(**dict(PARAMS, **params)).fit(texts)


def test_divergence_error_is_a_floating_point_error(texts):
    with pytest.raises(FloatingPointError):
        BNVAE(**dict(PARAMS, lr=1e9)).fit(texts)


def test_weights_are_finite_after_the_error(texts):
    vae = BNVAE(**dict(PARAMS, lr=1e9))
    with pytest.raises(TrainingDivergedError):
        vae.fit(texts)
    # raised before the offending update: no weight got NaN from it
    assert all(bool(torch.isfinite(p).all()) for p in vae.module_.parameters())


def test_classifier_surfaces_the_error(texts):
    y = np.r_[np.zeros(10, int), np.ones(10, int), -np.ones(len(texts) - 20, int)]
    with pytest.raises(TrainingDivergedError):
        BNVAEClassifier(vae=BNVAE(**dict(PARAMS, lr=1e9))).fit(texts, y)


@pytest.mark.parametrize("gamma", [math.inf, -math.inf, math.nan, np.float64("inf")])
def test_gamma_must_be_finite(texts, gamma):
    with pytest.raises(ValueError, match="'gamma' parameter of BNVAE must be a float in the range"):
        BNVAE(**dict(PARAMS, gamma=gamma)).fit(texts)


def test_other_float_parameters_must_be_finite(texts):
    with pytest.raises(ValueError, match="'lr' parameter"):
        BNVAE(**dict(PARAMS, lr=math.inf)).fit(texts)


def test_transform_refuses_to_return_nan(texts):
    vae = BNVAE(**dict(PARAMS, max_epochs=1)).fit(texts)
    assert np.isfinite(vae.transform(texts[:5])).all()
    with torch.no_grad():
        vae.module_.encoder.to_posterior.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"non-finite \(NaN or infinite\) means for 5 of 5 texts"):
        vae.transform(texts[:5])


def test_non_finite_validation_loss_is_an_error(texts, monkeypatch):
    from ssl_textvae.engine import distributed

    # validation runs through the process's shard (one process: evaluate_elbo as before)
    monkeypatch.setattr(distributed, "evaluate_elbo", lambda *args, **kwargs: {
        "loss": math.nan, "reconstruction": math.nan, "kl": 1.0, "active_units": 0})
    with pytest.raises(TrainingDivergedError, match="validation loss became nan .* in epoch 1"):
        BNVAE(**PARAMS).fit(texts)


def test_clipped_sgd_refuses_a_non_finite_gradient():
    from ssl_textvae.nn.optim import ClippedSGD

    layer = torch.nn.Linear(3, 2)
    update = ClippedSGD(layer, torch.optim.SGD(layer.parameters(), lr=1.0), 5.0, bf16_weights=False)
    layer(torch.ones(1, 3)).sum().backward()
    layer.weight.grad[0, 0] = float("inf")
    before = layer.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="gradient norm became inf"):
        update.step()
    assert torch.equal(layer.weight.detach(), before)


def test_fine_tuned_transform_refuses_to_return_nan(texts):
    from sklearn.frozen import FrozenEstimator

    from ssl_textvae import FineTunedBNVAEClassifier

    vae = BNVAE(**dict(PARAMS, max_epochs=1)).fit(texts)
    y = np.arange(len(texts)) % 2
    tuned = FineTunedBNVAEClassifier(FrozenEstimator(vae), fine_tuning_max_epochs=1, random_state=0,
                                     verbose=0).fit(texts, y)
    with torch.no_grad():
        for parameter in tuned.module_.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        tuned.transform(texts[:5])
