"""Fine-tuning the pretrained encoder with the labels (FineTunedBNVAEClassifier and the
torch-only loop of ssl_textvae.engine.fine_tuning)."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

import ssl_textvae
from ssl_textvae import BNVAE, FineTunedBNVAEClassifier
from ssl_textvae.nn.inference import encode_means

from conftest import TINY, check_classifier_outputs, make_corpus


@pytest.fixture(scope="module")
def labeled():
    texts, labels = make_corpus(120, seed=3)
    return texts, labels


@pytest.fixture(scope="module")
def fine_tuned(fitted_vae, labeled):
    return FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=4,
                                    fine_tuning_lr=1e-3, random_state=0,
                                    verbose=0).fit(*labeled)


@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_predicts_held_out_texts(fine_tuned, held_out):
    texts, labels = held_out
    assert fine_tuned.score(texts, labels) > 0.8
    check_classifier_outputs(fine_tuned, texts)
    scores = fine_tuned.decision_function(texts)
    np.testing.assert_array_equal(fine_tuned.predict(texts), fine_tuned.classes_[(scores > 0).astype(int)])
    assert fine_tuned.transform(texts).shape == (len(texts), TINY["latent_dim"])


def test_history_and_best_epoch(fine_tuned):
    assert 1 <= len(fine_tuned.history_) <= 4
    assert 0 <= fine_tuned.best_epoch_ <= len(fine_tuned.history_)
    assert {"train_loss", "valid_loss", "valid_accuracy"} <= set(fine_tuned.history_[0])


def test_the_pretrained_vae_is_not_modified(fitted_vae, labeled):
    before = {k: v.clone() for k, v in fitted_vae.module_.state_dict().items()}
    means = fitted_vae.transform(labeled[0][:10])
    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=2,
                                     fine_tuning_lr=1e-2, random_state=0,
                                     verbose=0).fit(*labeled)
    for name, value in fitted_vae.module_.state_dict().items():
        assert torch.equal(value, before[name]), name
    np.testing.assert_array_equal(fitted_vae.transform(labeled[0][:10]), means)
    assert not np.allclose(model.transform(labeled[0][:10]), means)   # the copy did move


def test_epoch_zero_is_the_frozen_start_head(fitted_vae, labeled):
    # lr so small that no epoch changes the validation result: the frozen start is kept
    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=2,
                                     fine_tuning_lr=1e-12, fine_tuning_patience=1, random_state=0,
                                     precision="fp32", verbose=0).fit(*labeled)
    assert model.best_epoch_ == 0
    frozen = encode_means(fitted_vae.module_, fitted_vae.encode(labeled[0]), torch.device("cpu"),
                          precision="fp32")
    np.testing.assert_allclose(model.transform(labeled[0]), frozen, atol=1e-5)


def test_same_random_state_same_model(fitted_vae, labeled):
    first = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=2, random_state=5, verbose=0).fit(*labeled)
    second = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=2, random_state=5, verbose=0).fit(*labeled)
    np.testing.assert_array_equal(first.decision_function(labeled[0]), second.decision_function(labeled[0]))


def test_string_labels_and_three_classes(fitted_vae, labeled):
    texts, labels = labeled
    names = np.array(["neg", "pos", "other"])[np.where(np.arange(len(labels)) % 5 == 0, 2, labels)]
    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=1, random_state=0, verbose=0).fit(texts, names)
    assert list(model.classes_) == ["neg", "other", "pos"]
    assert set(model.predict(texts)) <= set(model.classes_)
    assert model.decision_function(texts).shape == (len(texts), 3)


def test_bad_input_is_refused_with_a_clear_error(fitted_vae, labeled):
    texts, labels = labeled
    frozen = FrozenEstimator(fitted_vae)
    with pytest.raises(TypeError, match="vae must be a BNVAE .* or None, got str"):
        FineTunedBNVAEClassifier("vae").fit(texts, labels)
    with pytest.raises(NotFittedError, match="The BNVAE inside FrozenEstimator is not fitted yet"):
        FineTunedBNVAEClassifier(FrozenEstimator(BNVAE())).fit(texts, labels)
    with pytest.raises(ValueError, match="only one class"):
        FineTunedBNVAEClassifier(frozen, verbose=0).fit(texts[:3], [0, -1, -1])
    with pytest.raises(ValueError, match="at least 2 labeled texts"):
        FineTunedBNVAEClassifier(frozen, verbose=0).fit(texts[:5], [0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="The 'fine_tuning_lr' parameter of FineTunedBNVAEClassifier"):
        FineTunedBNVAEClassifier(frozen, fine_tuning_lr=0).fit(texts, labels)
    with pytest.raises(NotFittedError):
        FineTunedBNVAEClassifier(frozen).predict(texts)


def test_unlabeled_rows_pretrain_the_vae_and_are_not_fine_tuned_on(corpus, semi_labels, held_out,
                                                                   count_pretraining):
    vae = BNVAE(**dict(TINY, max_epochs=2))
    model = FineTunedBNVAEClassifier(vae, fine_tuning_max_epochs=1, random_state=0, verbose=0)
    model.fit(corpus[0], semi_labels)
    assert len(count_pretraining) == 1 and not hasattr(vae, "module_")
    assert model.vae_.tokenizer_.vocab_size > 4 and list(model.classes_) == [0, 1]
    assert model.get_params()["vae__max_epochs"] == 2
    # the same vae semantics as BNVAEClassifier: frozen means reused, nothing pretrained
    again = FineTunedBNVAEClassifier(FrozenEstimator(model.vae_), fine_tuning_max_epochs=1,
                                     random_state=0, verbose=0).fit(corpus[0], semi_labels)
    assert len(count_pretraining) == 1 and again.vae_ is model.vae_
    np.testing.assert_array_equal(again.predict(held_out[0]), model.predict(held_out[0]))


def test_no_parameter_name_is_shared_with_the_pretraining_ones():
    fine_tuning = set(FineTunedBNVAEClassifier().get_params(deep=False)) - {"vae"}
    runtime = {"device", "precision", "random_state", "verbose"}   # of each estimator's own phase
    assert not (fine_tuning - runtime) & set(BNVAE().get_params())


def test_format_1_directories_still_load():
    """Written by ssl_textvae 0.1.0 (format 1), before the fine-tuning settings got their prefix."""
    import os

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    model = FineTunedBNVAEClassifier.load(os.path.join(data, "format1_fine_tuned"))
    params = model.get_params()
    assert params["fine_tuning_lr"] == 0.5 and params["fine_tuning_optimizer"] == "sgd"
    assert params["head_dropout"] == 0.1 and isinstance(model.vae, FrozenEstimator)
    model.set_params(precision="fp32")   # the reference is 0.1.0's fp32 output (bf16 moves it)
    np.testing.assert_allclose(model.decision_function(["the food was good", "rude staff and cold food"]),
                               np.load(os.path.join(data, "format1_fine_tuned_decision.npy")), atol=1e-5)


def test_pickle_round_trip_predicts_the_same(fine_tuned, held_out):
    import pickle

    restored = pickle.loads(pickle.dumps(fine_tuned))
    np.testing.assert_array_equal(restored.decision_function(held_out[0]),
                                  fine_tuned.decision_function(held_out[0]))


def test_pickle_stores_a_cpu_state_dict_and_predict_moves_the_module(fine_tuned, held_out, monkeypatch):
    import pickle

    from ssl_textvae.estimators import fine_tuned as module

    state = fine_tuned.__getstate__()
    assert isinstance(state["module_"], dict)
    assert all(value.device.type == "cpu" for value in state["module_"].values())
    restored = pickle.loads(pickle.dumps(fine_tuned))
    # a fake accelerator: predict asks for the module on the resolved device, whatever it is
    fake = torch.device("cpu", 0)
    monkeypatch.setattr(module, "resolve_device", lambda device: fake)
    moved, to = [], restored.module_.to
    restored.module_.to = lambda device: moved.append(device) or to(device)
    np.testing.assert_array_equal(restored.predict_proba(held_out[0]), fine_tuned.predict_proba(held_out[0]))
    assert restored.transform(held_out[0][:3]).shape == (3, TINY["latent_dim"])
    assert moved == [fake, fake]


@pytest.mark.parametrize("string_labels", [False, True])
def test_save_and_load_predict_the_same(fitted_vae, labeled, held_out, tmp_path, string_labels):
    texts, labels = labeled
    y = np.array(["neg", "pos"])[labels] if string_labels else labels
    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=1,
                                     features="hidden", random_state=0,
                                     verbose=0).fit(texts, y)
    model.save(tmp_path / "model")
    loaded = FineTunedBNVAEClassifier.load(tmp_path / "model")
    assert isinstance(ssl_textvae.load(tmp_path / "model"), FineTunedBNVAEClassifier)
    assert isinstance(loaded.vae, FrozenEstimator) and loaded.vae.estimator is loaded.vae_
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict(held_out[0]), model.predict(held_out[0]))
    np.testing.assert_allclose(loaded.decision_function(held_out[0]),
                               model.decision_function(held_out[0]), rtol=1e-6)
    assert loaded.best_epoch_ == model.best_epoch_ and loaded.get_params()["features"] == "hidden"
    with pytest.raises(ValueError, match="holds a FineTunedBNVAEClassifier"):
        BNVAE.load(tmp_path / "model")
    with pytest.raises(ValueError, match="holds a BNVAE"):
        FineTunedBNVAEClassifier.load(tmp_path / "model" / "vae")



@pytest.mark.parametrize("edit, message", [
    ({"format_version": 99}, "model format version 99"),
    ({"best_epoch": None}, r"lacks \['best_epoch'\]"),
])
def test_load_refuses_another_format_or_a_config_missing_keys(fine_tuned, tmp_path, edit, message):
    import json

    fine_tuned.save(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    config = json.loads(config_file.read_text())
    for key, value in edit.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        FineTunedBNVAEClassifier.load(tmp_path / "model")

@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_cross_validation_shares_the_pretrained_vae(fitted_vae, labeled):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=1, random_state=0, verbose=0)
    assert clone(model).vae is model.vae   # a frozen BNVAE is shared, never pretrained again
    scores = cross_val_score(model, np.asarray(labeled[0], dtype=object), labeled[1], cv=3)
    assert scores.shape == (3,) and (scores > 0.5).all()


@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_paper_protocol_selects_on_validation_data_and_halves_the_lr(fitted_vae, labeled, held_out):
    # The official code's classifier: SGD, clipping, dropout on the means, a plateau of 1 epoch
    # halves the learning rate, selection on the loss of a separate labeled set.
    valid_texts, valid_labels = held_out
    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=12,
                                     fine_tuning_optimizer="sgd", fine_tuning_lr=1.0,
                                     fine_tuning_batch_size=16,
                                     fine_tuning_clip_grad_norm=5.0, head_dropout=0.5, fine_tuning_patience=1, fine_tuning_max_lr_halvings=2,
                                     fine_tuning_selection="loss", random_state=0, verbose=0)
    model.fit(*labeled, validation_data=(valid_texts, valid_labels))
    rates = [epoch["lr"] for epoch in model.history_]
    assert rates[0] == 1.0
    assert set(rates) <= {1.0, 0.5, 0.25}
    assert rates == sorted(rates, reverse=True)
    # selection on the loss: the kept epoch has the smallest validation loss seen (or the start)
    losses = [epoch["valid_loss"] for epoch in model.history_]
    if model.best_epoch_:
        assert losses[model.best_epoch_ - 1] == min(losses)
    assert model.score(valid_texts, valid_labels) > 0.8


def test_a_plateau_stops_after_the_allowed_halvings(fitted_vae, labeled):
    # lr so small that nothing improves: every epoch is a plateau of 1, so 2 halvings give 3 epochs
    model = FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=20,
                                     fine_tuning_optimizer="sgd", fine_tuning_lr=1e-12,
                                     fine_tuning_patience=1,
                                     fine_tuning_max_lr_halvings=2, fine_tuning_selection="loss", random_state=0,
                                     verbose=0).fit(*labeled)
    assert [epoch["lr"] for epoch in model.history_] == [1e-12, 5e-13, 2.5e-13]
    assert model.best_epoch_ == 0


@pytest.mark.parametrize("validation_data, error, match", [
    (["a b"], TypeError, "pair"),
    ((["good food"], [7]), ValueError, "absent from y"),
])
def test_bad_validation_data_is_refused(fitted_vae, labeled, validation_data, error, match):
    with pytest.raises(error, match=match):
        FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=1, verbose=0).fit(
            *labeled, validation_data=validation_data)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["params"].update(nope=1), r"params.nope is not a parameter of FineTunedBNVAEClassifier"),
    (lambda c: c.update(params=[1]), r"params must be a JSON object"),
    (lambda c: c["params"].update(dropout="x"), r"params.dropout must be a float in the range \[0, 1\)"),
    (lambda c: c.update(classes_dtype="zz"), r"classes_dtype could not be read"),
    (lambda c: c.update(classes={"a": 1}), r"classes must be a list"),
    (lambda c: c.update(vae_frozen="yes"), r"vae_frozen must be a bool"),
    (lambda c: c.update(best_epoch="2"), r"best_epoch must be an int"),
], ids=["unknown-param", "params-list", "dropout", "classes-dtype", "classes", "frozen", "best-epoch"])
def test_tampered_config_is_a_value_error_naming_file_and_field(fine_tuned, tmp_path, edit, match):
    import json

    fine_tuned.save(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    config = json.loads(config_file.read_text())
    edit(config)
    config_file.write_text(json.dumps(config))
    for load in (FineTunedBNVAEClassifier.load, ssl_textvae.load):
        with pytest.raises(ValueError, match="config.json': " + match):
            load(tmp_path / "model")
