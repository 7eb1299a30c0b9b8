"""Collapse remedies as switches of one model: KL schedules, free bits, autoencoder."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from ssl_textvae import BNVAE, BNVAEClassifier
from ssl_textvae.engine.training import KLSchedule, kl_penalty
from ssl_textvae.estimators.bnvae import training_config

from conftest import make_corpus, text_vae

SMALL = dict(embed_dim=16, hidden_dim=32, latent_dim=4, max_epochs=2, batch_size=16,
             random_state=0, verbose=0)

REMEDIES = {
    "bnvae": dict(gamma=0.7),
    "vae": dict(gamma=0),
    "autoencoder": dict(gamma=0, objective="autoencoder"),
    "kl_annealing": dict(gamma=0, kl_schedule="linear", kl_start=0.1, kl_warmup_steps=15),
    "cyclical": dict(gamma=0, kl_schedule="cyclical", kl_cycles=2, kl_cycle_ratio=0.5),
    "free_bits": dict(gamma=0, free_bits=0.5),
    "bnvae+annealing": dict(gamma=0.7, kl_schedule="linear", kl_warmup_steps=15),
}


@pytest.fixture(scope="module")
def texts():
    return make_corpus(200, seed=5)[0]


def test_constant_schedule_is_one():
    schedule = KLSchedule("constant")
    assert [schedule(step) for step in (0, 7, 10**6)] == [1.0, 1.0, 1.0]


def test_linear_schedule_ramps_from_start_to_one():
    schedule = KLSchedule("linear", start=0.1, warmup_steps=10)
    assert [schedule(step) for step in (0, 5, 10, 11, 1000)] == pytest.approx([0.1, 0.55, 1, 1, 1])


def test_cyclical_schedule_follows_fu_et_al():
    # 100 steps, 4 cycles of 25, the weight rises during the first half of each cycle
    schedule = KLSchedule("cyclical", start=0.0, n_cycles=4, cycle_ratio=0.5, total_steps=100)
    weights = [schedule(step) for step in (0, 5, 12, 13, 24, 25, 30, 99)]
    assert weights == pytest.approx([0, 0.4, 0.96, 1, 1, 0, 0.4, 1])


def test_schedule_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        KLSchedule("exponential")


def test_autoencoder_schedule_is_zero_whatever_the_kl_schedule():
    config = training_config(BNVAE(objective="autoencoder", kl_schedule="linear"), seed=0)
    schedule = KLSchedule.from_config(config, steps_per_epoch=10)
    assert schedule(0) == schedule(10**5) == 0.0


def test_free_bits_clamp_each_dimension_and_stop_its_gradient():
    kl = torch.tensor([[0.1, 2.0], [0.7, 0.2]], requires_grad=True)
    penalty = kl_penalty(kl, free_bits=0.5)
    torch.testing.assert_close(penalty, torch.tensor([2.5, 1.2]))
    penalty.sum().backward()
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    torch.testing.assert_close(kl_penalty(kl.detach()), torch.tensor([2.1, 0.9]))


def test_autoencoder_code_is_deterministic_and_equals_the_mean():
    module = text_vae(20, embed_dim=8, hidden_dim=16, latent_dim=4, gamma=0, dropout_in=0.0,
                      dropout_out=0.0).train()
    tokens = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    lengths = torch.tensor([4, 3])
    first, second = module.autoencode(tokens, lengths), module.autoencode(tokens, lengths)
    torch.testing.assert_close(first["reconstruction"], second["reconstruction"])
    expected = module.decoder.reconstruction_nll(tokens, lengths, first["mean"].unsqueeze(1))
    torch.testing.assert_close(first["reconstruction"], expected.squeeze(1))


@pytest.mark.parametrize("name", list(REMEDIES))
def test_each_remedy_trains(texts, name):
    vae = BNVAE(**SMALL, **REMEDIES[name]).fit(texts)
    assert len(vae.history_) == SMALL["max_epochs"]
    for record in vae.history_:
        assert np.isfinite(record["train_loss"]) and np.isfinite(record["valid_loss"])
        assert 0.0 <= record["kl_weight"] <= 1.0
        # Validation always reports the true negative ELBO (KL weight 1)
        assert record["valid_loss"] == pytest.approx(
            record["valid_reconstruction"] + record["valid_kl"])
    assert vae.transform(texts[:5]).shape == (5, SMALL["latent_dim"])


def test_autoencoder_has_no_kl_term_in_its_loss(texts):
    vae = BNVAE(**SMALL, **REMEDIES["autoencoder"]).fit(texts)
    for record in vae.history_:
        assert record["kl_weight"] == 0.0
        assert record["train_loss"] == pytest.approx(record["train_reconstruction"])
        assert "valid_objective" in record


def test_annealing_weight_is_recorded_per_epoch(texts):
    # 180 training texts in batches of 16: 12 steps per epoch; warmup of 15 steps
    vae = BNVAE(**SMALL, **REMEDIES["kl_annealing"]).fit(texts)
    first, second = (record["kl_weight"] for record in vae.history_)
    assert 0.1 <= first < second <= 1.0
    assert first == pytest.approx(np.mean([0.1 + 0.9 * step / 15 for step in range(12)]))


def test_free_bits_training_loss_counts_the_floor(texts):
    vae = BNVAE(**SMALL, **REMEDIES["free_bits"]).fit(texts)
    for record in vae.history_:
        # max(KL_d, 0.5) summed over 4 dimensions is at least 2 nats per text
        assert record["train_loss"] >= record["train_reconstruction"] + 4 * 0.5 - 1e-6


@pytest.mark.parametrize("params, match", [
    (dict(objective="vq"), "'objective' parameter"),
    (dict(kl_schedule="cosine"), "'kl_schedule' parameter"),
    (dict(kl_start=1.5), "'kl_start' parameter"),
    (dict(kl_warmup_steps=0), "'kl_warmup_steps' parameter"),
    (dict(kl_cycles=0), "'kl_cycles' parameter"),
    (dict(kl_cycle_ratio=0.0), "'kl_cycle_ratio' parameter"),
    (dict(free_bits=-0.1), "'free_bits' parameter"),
])
def test_remedy_parameters_are_validated(texts, params, match):
    with pytest.raises(ValueError, match=match):
        BNVAE(**SMALL, **params).fit(texts)


def test_remedy_parameters_are_nested_vae_parameters(texts):
    labels = np.full(len(texts), -1)
    labels[:10] = [0, 1] * 5
    classifier = BNVAEClassifier(vae=BNVAE(**SMALL, gamma=0, kl_schedule="linear",
                                           kl_warmup_steps=7, free_bits=0.25))
    cloned = clone(classifier)
    assert cloned.get_params()["vae__kl_warmup_steps"] == 7
    cloned.fit(texts, labels)
    assert cloned.vae_.kl_schedule == "linear" and cloned.vae_.free_bits == 0.25
    assert cloned.history_[0]["kl_weight"] < 1.0
