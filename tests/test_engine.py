"""The one training engine: every task gets the divergence check, and the epoch loop
is written once."""

import os

import pytest
from sklearn.frozen import FrozenEstimator

from ssl_textvae import BNCVAE, BNVAE, FineTunedBNVAEClassifier, TrainingDivergedError
from ssl_textvae.dialogue import dialogue_pairs

from conftest import make_corpus
from test_cvae import TINY as TINY_CVAE, make_dialogues

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ssl_textvae")
WHERE = r"in epoch \d+, batch \d+ of \d+ \(optimizer step \d+\)\. The learning rate is 1e\+09"


@pytest.fixture(scope="module")
def labeled():
    return make_corpus(80, seed=7)


@pytest.fixture(scope="module")
def tiny_vae(labeled):
    return BNVAE(embed_dim=8, hidden_dim=8, latent_dim=2, max_epochs=1, batch_size=16, random_state=0,
                 verbose=0).fit(labeled[0])


def test_fine_tuning_with_a_huge_lr_raises_a_divergence_error(tiny_vae, labeled):
    # SGD: Adam's steps are bounded by lr and the features by the LSTM and the batch norm,
    # so Adam at 1e9 gives large but finite losses, nothing to stop
    model = FineTunedBNVAEClassifier(FrozenEstimator(tiny_vae), fine_tuning_lr=1e9,
                                     fine_tuning_optimizer="sgd", fine_tuning_max_epochs=5,
                                     fine_tuning_batch_size=8, random_state=0, verbose=0)
    with pytest.raises(TrainingDivergedError, match=f"Fine-tuning diverged: .* {WHERE}"):
        model.fit(*labeled)


def test_dialogue_training_with_a_huge_lr_raises_a_divergence_error():
    pairs = dialogue_pairs(make_dialogues(40), max_context=3)
    with pytest.raises(TrainingDivergedError, match=f"Dialogue training diverged: .* {WHERE}"):
        BNCVAE(**dict(TINY_CVAE, lr=1e9, clip_grad_norm=None, max_epochs=5)).fit(*pairs)


def test_the_epoch_loop_is_written_once():
    modules = []
    for root, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(root, file)
                if "for epoch" in open(path, encoding="utf-8").read():
                    modules.append(os.path.relpath(path, PACKAGE))
    assert modules == [os.path.join("engine", "loop.py")]


def test_fine_tuning_resumes_from_its_checkpoint_to_the_same_result(tiny_vae, labeled, tmp_path):
    import numpy as np
    import torch

    from ssl_textvae import FineTunedBNVAEClassifier
    from ssl_textvae.engine.fine_tuning import EncoderClassifier, fine_tune
    from ssl_textvae.estimators.fine_tuned import fine_tuning_config

    corpus = tiny_vae.encode(labeled[0])
    train, valid = corpus.subset(np.arange(60)), corpus.subset(np.arange(60, 80))
    targets = np.asarray(labeled[1])

    def run(max_epochs, checkpoint_dir=None):
        torch.manual_seed(0)
        module = EncoderClassifier(tiny_vae.module_, 2, dropout=0.2)
        config = fine_tuning_config(FineTunedBNVAEClassifier(fine_tuning_max_epochs=max_epochs,
                                                             fine_tuning_patience=5, verbose=0))
        history, best = fine_tune(module, train, targets[:60], valid, targets[60:], config,
                                  torch.device("cpu"), seed=3, checkpoint_dir=checkpoint_dir)
        return history, best, module.state_dict()

    full = run(4)
    run(2, str(tmp_path))
    resumed = run(4, str(tmp_path))
    key = ("train_loss", "valid_loss", "valid_accuracy", "lr")
    assert [[h[k] for k in key] for h in resumed[0]] == [[h[k] for k in key] for h in full[0]]
    assert resumed[1] == full[1]
    torch.testing.assert_close(resumed[2], full[2], rtol=0, atol=0)
