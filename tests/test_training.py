"""The pretraining loop: history, checkpoints and resuming, plateau, RNG hygiene."""

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

from ssl_textvae import BNVAE
from ssl_textvae.engine import loop as engine
from ssl_textvae.engine.checkpoints import CHECKPOINT_NAME

from conftest import TINY, make_corpus

PARAMS = dict(TINY, batch_size=16)
LOSS_KEYS = ("train_loss", "train_reconstruction", "train_kl", "valid_loss",
             "valid_reconstruction", "valid_kl", "valid_active_units", "lr")


@pytest.fixture(scope="module")
def texts():
    return make_corpus(160, seed=3)[0]


@pytest.fixture(scope="module")
def three_epochs(texts):
    return BNVAE(**dict(PARAMS, max_epochs=3)).fit(texts)


def losses(history):
    return [{k: record[k] for k in LOSS_KEYS} for record in history]


def test_history_has_one_record_per_epoch(three_epochs):
    history = three_epochs.history_
    assert [record["epoch"] for record in history] == [1, 2, 3]
    expected = set(LOSS_KEYS) | {"epoch", "seconds", "tokens_per_second", "pre_bn_var_min", "mean_threads",
                                 "kl_weight"}
    for index, record in enumerate(history):   # the matrix-multiply path, and how it was chosen at first
        assert set(record) == expected | {"matmul_path"} | ({"matmul_probe"} if index == 0 else set())
        assert all(isinstance(value, (int, float)) for key, value in record.items() if not key.startswith("matmul_"))
        assert record["matmul_path"] == history[0]["matmul_probe"]["path"]
        assert record["train_loss"] == pytest.approx(record["train_reconstruction"] + record["train_kl"])
        assert record["valid_loss"] == pytest.approx(record["valid_reconstruction"] + record["valid_kl"])
        assert record["lr"] == PARAMS.get("lr", 1.0)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_plain_vae_history_has_no_pre_bn_variance(texts):
    vae = BNVAE(**dict(PARAMS, gamma=0, max_epochs=1)).fit(texts)
    assert "pre_bn_var_min" not in vae.history_[0]


def test_same_random_state_gives_identical_transform(three_epochs, texts):
    again = BNVAE(**dict(PARAMS, max_epochs=3)).fit(texts)
    np.testing.assert_array_equal(again.transform(texts[:40]), three_epochs.transform(texts[:40]))
    assert losses(again.history_) == losses(three_epochs.history_)


def test_other_random_state_gives_other_model(three_epochs, texts):
    other = BNVAE(**dict(PARAMS, max_epochs=1, random_state=1)).fit(texts)
    first = BNVAE(**dict(PARAMS, max_epochs=1)).fit(texts)
    assert not np.allclose(other.transform(texts[:40]), first.transform(texts[:40]))


def test_fit_leaves_global_rngs_alone(texts):
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    BNVAE(**dict(PARAMS, max_epochs=1)).fit(texts)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    # random_state=None draws its seed from numpy's global RandomState, as scikit-learn
    # does, but torch's global generator is still left alone.
    BNVAE(**dict(PARAMS, max_epochs=1, random_state=None)).fit(texts)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_checkpoint_resume_continues_the_run(three_epochs, texts, tmp_path):
    first = BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(tmp_path))).fit(texts)
    assert os.path.exists(tmp_path / CHECKPOINT_NAME)
    assert len(first.history_) == 2
    resumed = BNVAE(**dict(PARAMS, max_epochs=3, checkpoint_dir=str(tmp_path))).fit(texts)
    assert [record["epoch"] for record in resumed.history_] == [1, 2, 3]
    assert resumed.history_[:2] == first.history_  # read back, not recomputed
    # and the resumed run is the uninterrupted one
    assert losses(resumed.history_) == losses(three_epochs.history_)
    np.testing.assert_array_equal(resumed.transform(texts[:40]), three_epochs.transform(texts[:40]))


def test_interrupted_run_resumes_from_its_checkpoint(three_epochs, texts, tmp_path, monkeypatch):
    real_epoch = engine.train_epoch

    def interrupt_in_epoch_two(task, optimizer, state, *args):
        if state["epoch"] == 1:
            raise KeyboardInterrupt
        return real_epoch(task, optimizer, state, *args)

    params = dict(PARAMS, max_epochs=3, checkpoint_dir=str(tmp_path))
    monkeypatch.setattr(engine, "train_epoch", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        BNVAE(**params).fit(texts)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["epoch"] == 1 and len(saved["history"]) == 1
    assert not os.path.exists(tmp_path / (CHECKPOINT_NAME + ".tmp"))
    monkeypatch.setattr(engine, "train_epoch", real_epoch)
    resumed = BNVAE(**params).fit(texts)
    assert losses(resumed.history_) == losses(three_epochs.history_)


@pytest.mark.parametrize("change, match", [
    (dict(lr=0.5), "another training configuration"),
    (dict(batch_size=8), "another training configuration"),
    (dict(random_state=7), "another training configuration"),
    (dict(hidden_dim=48), "another model"),
    (dict(gamma=0.3), "another model"),
    (dict(gamma=0), "another model"),
])
def test_checkpoint_from_another_configuration_raises(texts, tmp_path, change, match):
    BNVAE(**dict(PARAMS, max_epochs=1, checkpoint_dir=str(tmp_path))).fit(texts)
    with pytest.raises(ValueError, match=match) as caught:
        BNVAE(**dict(PARAMS, max_epochs=2, checkpoint_dir=str(tmp_path), **change)).fit(texts)
    assert "checkpoint_dir" in str(caught.value)


def test_checkpoint_dir_is_created(texts, tmp_path):
    directory = tmp_path / "runs" / "first"
    BNVAE(**dict(PARAMS, max_epochs=1, checkpoint_dir=str(directory))).fit(texts)
    assert os.path.exists(directory / CHECKPOINT_NAME)


def test_checkpoint_ignores_verbose_and_max_epochs(texts, tmp_path):
    BNVAE(**dict(PARAMS, max_epochs=1, checkpoint_dir=str(tmp_path))).fit(texts)
    again = BNVAE(**dict(PARAMS, max_epochs=1, verbose=1, checkpoint_dir=str(tmp_path))).fit(texts)
    assert len(again.history_) == 1


# -- learning-rate plateau ------------------------------------------------------------------
def plateau_setup(lr=1.0):
    module = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    return module, optimizer, engine.new_state(0)


def step(module, optimizer, state, loss, min_delta=1e-4):
    """Pretraining's plateau: the score is minus the validation loss."""
    engine.plateau_step(module, optimizer, state, (-loss,), patience=2, min_delta=min_delta)


def test_plateau_halves_lr_after_patience_and_restores_best_weights():
    module, optimizer, state = plateau_setup()
    step(module, optimizer, state, 5.0)
    best = copy.deepcopy(module.state_dict())
    assert state["best_loss"] == 5.0 and state["bad_epochs"] == 0
    with torch.no_grad():
        module.weight.add_(1.0)  # training moves on
    step(module, optimizer, state, 5.5)
    assert optimizer.param_groups[0]["lr"] == 1.0 and state["bad_epochs"] == 1
    assert not torch.equal(module.weight, best["weight"])
    step(module, optimizer, state, 5.0)  # not better
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert state["halvings"] == 1 and state["bad_epochs"] == 0
    torch.testing.assert_close(module.state_dict(), best)


def test_plateau_improvement_resets_the_count():
    module, optimizer, state = plateau_setup()
    for loss in (5.0, 6.0, 4.0, 6.0):
        step(module, optimizer, state, loss)
    assert optimizer.param_groups[0]["lr"] == 1.0
    assert state["best_loss"] == 4.0 and state["bad_epochs"] == 1
    for _ in range(4):  # bad epochs 2 (halve), 1, 2 (halve), 1
        step(module, optimizer, state, 9.0)
    assert optimizer.param_groups[0]["lr"] == 0.25 and state["halvings"] == 2


def test_plateau_compares_tuples_and_keeps_the_epoch():
    # fine-tuning's accuracy-then-loss selection: a tie on accuracy goes to the lower loss
    module, optimizer, state = plateau_setup()
    engine.plateau_step(module, optimizer, state, (0.5, -1.0), patience=1, epoch=0)
    engine.plateau_step(module, optimizer, state, (0.5, -0.8), patience=1, epoch=1)
    engine.plateau_step(module, optimizer, state, (0.5, -0.9), patience=1, epoch=2)
    assert state["best_score"] == [0.5, -0.8] and state["best_epoch"] == 1 and state["halvings"] == 1


@pytest.mark.filterwarnings("ignore::ssl_textvae.KLCollapseWarning")  # weights stay at init scale
def test_training_stops_after_max_lr_halvings(texts):
    # With a tiny lr the validation loss barely moves, so it plateaus within a few epochs;
    # the third halving (after an epoch at lr / 4) ends training long before max_epochs.
    vae = BNVAE(**dict(PARAMS, lr=1e-12, max_epochs=20, lr_patience=1, max_lr_halvings=2)).fit(texts)
    assert 4 <= len(vae.history_) < 20
    assert vae.history_[-1]["lr"] == pytest.approx(1e-12 / 4)


def test_verbose_prints_one_line_per_epoch(texts, capsys):
    BNVAE(**dict(PARAMS, max_epochs=2, verbose=1)).fit(texts)
    out = capsys.readouterr().out
    assert out.count("epoch 1: train_loss") == 1 and out.count("epoch 2: train_loss") == 1
    assert "valid_kl" in out
    BNVAE(**dict(PARAMS, max_epochs=1, verbose=0)).fit(texts)
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch" not in captured.err
