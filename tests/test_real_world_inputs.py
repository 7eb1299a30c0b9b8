"""Input as production code and notebooks send it (issue 17, items 2, 4, 7 and 9):
DataFrames, numpy parameters, empty and unknown texts, non-string items, and
parameters of the wrong type."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

from ssl_textvae import BNVAE, BNVAEClassifier
from ssl_textvae.estimators.fine_tuned import FineTunedBNVAEClassifier
from ssl_textvae.text.inputs import check_labels, check_texts, iterate_texts
from ssl_textvae.runtime.devices import resolve_device

from conftest import TINY, make_corpus


@pytest.fixture(scope="module")
def fine_tuned(fitted_vae):
    texts, labels = make_corpus(60, seed=3)
    return FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=1,
                                    random_state=0, verbose=0).fit(texts, labels)


# -- item 7: every row sent gets a prediction ---------------------------------------------
def test_one_empty_text_in_a_batch_gets_a_prediction(fitted_classifier, held_out):
    texts = list(held_out[0][:20])
    texts[7] = ""
    texts[11] = "  \t"
    with pytest.warns(UserWarning, match="2 of 20 texts are empty and 0 consist of "
                                         "out-of-vocabulary tokens only"):
        predicted = fitted_classifier.predict(texts)
    assert len(predicted) == 20
    with pytest.warns(UserWarning, match="1 of 1 texts are empty"):
        assert fitted_classifier.predict_proba([""]).shape == (1, 2)


def test_a_single_unknown_text_warns_as_in_a_batch(fitted_classifier):
    with pytest.warns(UserWarning, match="0 of 1 texts are empty and 1 consist of out-of-vocabulary"):
        single = fitted_classifier.predict(["zebra giraffe"])
    with pytest.warns(UserWarning, match="0 of 2 texts are empty and 1 consist"):
        batch = fitted_classifier.predict(["zebra giraffe", "the food was good"])
    assert len(single) == 1 and single[0] == batch[0]


def test_empty_and_unknown_rows_are_encoded_alike(fitted_vae):
    with pytest.warns(UserWarning, match="1 of 2 texts are empty and 1 consist"):
        means = fitted_vae.transform(["", "zebra"])
    np.testing.assert_allclose(means[0], means[1])


def test_fine_tuned_predicts_every_row(fine_tuned):
    with pytest.warns(UserWarning, match="1 of 3 texts are empty"):
        assert len(fine_tuned.predict(["the food was good", "", "great place"])) == 3


def test_classifier_fit_skips_an_empty_unlabeled_row_as_bnvae_does(corpus, semi_labels):
    texts = list(corpus[0])
    texts[50] = ""   # semi_labels[50] == -1
    assert semi_labels[50] == -1
    with pytest.warns(UserWarning, match="Skipped 1 empty or whitespace-only texts"):
        BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1))).fit(texts, semi_labels)
    texts[50], texts[3] = "good", " "
    with pytest.raises(ValueError, match="Item 3 of X is empty or whitespace only"):
        BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1))).fit(texts, semi_labels)


# -- item 2: pandas --------------------------------------------------------------------------
def test_a_dataframe_is_read_as_its_rows_not_its_column_names(fitted_classifier, fine_tuned,
                                                              held_out):
    texts, labels = list(held_out[0][:30]), np.asarray(held_out[1][:30])
    expected = fitted_classifier.predict(texts)
    frame = pd.DataFrame({"food": texts})
    np.testing.assert_array_equal(fitted_classifier.predict(frame), expected)
    np.testing.assert_array_equal(fitted_classifier.predict(frame["food"]), expected)
    assert fitted_classifier.transform(frame).shape[0] == 30
    assert fitted_classifier.score(frame, labels) == fitted_classifier.score(texts, labels)
    assert len(fine_tuned.predict(frame)) == 30
    indexed = pd.Series(texts, index=range(100, 130))   # a filtered frame's index
    np.testing.assert_array_equal(fitted_classifier.predict(indexed), expected)


def test_a_dataframe_of_several_columns_is_refused():
    frame = pd.DataFrame({"title": ["a", "b"], "body": ["c", "d"]})
    with pytest.raises(ValueError, match=r"DataFrame with 2 columns \['title', 'body'\]\. "
                                         r"Select the text column"):
        check_texts(frame)
    with pytest.raises(ValueError, match="Select the text column"):
        iterate_texts(frame)
    assert list(iterate_texts(pd.DataFrame({"text": ["a b", "c"]}))) == ["a b", "c"]


# -- item 4: numpy parameters -------------------------------------------------------------------
def test_numpy_scalar_parameters_fit(corpus):
    vae = BNVAE(**dict(TINY, max_epochs=1, latent_dim=np.int64(4), hidden_dim=np.int32(16),
                       batch_size=np.int64(16), dropout_in=np.float64(0.2)))
    vae.fit(corpus[0][:60])
    assert vae.transform(["the food"]).shape == (1, 4)
    assert type(vae.latent_dim) is np.int64   # fit leaves the parameter as given
    assert pickle.loads(pickle.dumps(vae)).transform(["the food"]).shape == (1, 4)


def test_grid_search_over_a_numpy_grid(corpus):
    texts, labels = list(corpus[0][:60]), corpus[1][:60]
    search = GridSearchCV(BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1))),
                          {"vae__latent_dim": np.array([2, 4])}, cv=2, error_score="raise")
    search.fit(texts, labels)
    assert search.best_params_["vae__latent_dim"] in (2, 4)


# -- item 9 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("item, kind", [(None, "NoneType"), (3, "int"), (b"x", "bytes")])
def test_non_string_items_at_fit_name_the_item(corpus, item, kind):
    texts = list(corpus[0][:20])
    texts[5] = item
    with pytest.raises(TypeError, match=f"Expected every item of X to be a str; item 5 is {kind}"):
        BNVAE(**TINY).fit(texts)


def test_a_dataset_of_several_string_columns_is_refused():
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"title": ["a", "b"], "text": ["c d", "e"]})
    with pytest.raises(ValueError, match=r"2 string columns \['title', 'text'\]; expected one\. "
                                         r"Select the text column"):
        iterate_texts(data)
    assert list(iterate_texts(data.select_columns(["text"]))) == ["c d", "e"]


@pytest.mark.parametrize("y", [[1, "a", -1], ["1", 0, 0], pd.Series([1, "a", 0])])
def test_mixed_int_and_str_labels_are_refused(y):
    with pytest.raises(ValueError, match="y mixes label types"):
        check_labels(y, 3)


def test_string_and_int_labels_still_pass():
    assert check_labels(["a", "-1", "b"], 3)[1].tolist() == [False, True, False]
    assert check_labels(np.array(["a", "b"]), 2)[0].dtype.kind == "U"
    assert check_labels([1, -1], 2)[0].dtype.kind == "i"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine")
@pytest.mark.parametrize("device, match", [
    ("gpu", "must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device. Got 'gpu'"),
    ("cuda", "no CUDA GPU is available.*Use device='cpu'"),
    ("cuda:1", "no CUDA GPU is available"),
    (3.5, "must be 'auto', 'cpu'"),
])
def test_device_errors_say_what_to_do(device, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(device)


def test_device_values_that_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_bf16_on_a_cpu_without_bf16_kernels_is_refused_before_training(corpus, monkeypatch):
    """An AVX2-only CPU: oneDNN has no bf16 LSTM there; auto falls back to fp32 and an
    explicit bf16 is a clear error, not oneDNN's 'could not create a primitive'."""
    from ssl_textvae.runtime import devices as runtime

    monkeypatch.setattr(runtime, "cpu_runs_bf16_lstm", lambda: False)
    assert runtime.resolve_precision(torch.device("cpu"), "auto") == "fp32"
    with pytest.raises(ValueError, match=r"precision='bf16' but this CPU has no bfloat16 LSTM.*'fp32'"):
        BNVAE(latent_dim=2, embed_dim=4, hidden_dim=4, max_epochs=1, verbose=0,
              precision="bf16").fit(corpus[0][:20])


@pytest.mark.parametrize("params, match", [
    (dict(lowercase="yes"), r"'lowercase' parameter of BNVAE must be a bool\. Got 'yes'"),
    (dict(checkpoint_dir=123), r"'checkpoint_dir' parameter of BNVAE must be a str or "
                               r"os.PathLike \(a directory\) or None\. Got 123"),
])
def test_type_of_lowercase_and_checkpoint_dir(corpus, params, match):
    with pytest.raises(ValueError, match=match):
        BNVAE(**TINY, **params).fit(corpus[0][:20])


def test_score_counts_an_empty_row_as_predict_does(fitted_classifier, held_out):
    texts, labels = list(held_out[0][:10]), np.asarray(held_out[1][:10])
    texts[0] = ""
    with pytest.warns(UserWarning, match="1 of 10 texts are empty"):
        score = fitted_classifier.score(texts, labels)
    with pytest.warns(UserWarning, match="1 of 10 texts are empty"):
        assert score == np.mean(fitted_classifier.predict(texts) == labels)


# -- item 9: cross-validation with unlabeled rows -----------------------------------------------
@pytest.mark.parametrize("make", [
    lambda vae: BNVAEClassifier(vae=FrozenEstimator(vae)),
    lambda vae: FineTunedBNVAEClassifier(FrozenEstimator(vae), fine_tuning_max_epochs=1,
                                         random_state=0, verbose=0),
], ids=["head", "fine_tuned"])
@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_cross_val_score_with_unlabeled_rows_scores_the_labeled_ones(fitted_vae, make):
    texts, labels = make_corpus(80, seed=8)
    y = labels.copy()
    y[1::2] = -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no fold may fail into NaN with a warning
        scores = cross_val_score(make(fitted_vae), np.asarray(texts, dtype=object), y, cv=2)
    assert np.isfinite(scores).all() and (scores > 0.5).all()
    model = make(fitted_vae).fit(texts, y)
    labeled = y != -1
    kept = [text for text, keep in zip(texts, labeled) if keep]
    assert model.score(texts, y) == model.score(kept, y[labeled])
    weights = np.linspace(0.5, 2, len(y))
    assert model.score(texts, y, sample_weight=weights) == pytest.approx(
        model.score(kept, y[labeled], sample_weight=weights[labeled]))
    with pytest.raises(ValueError, match="Every label of y is -1 .*score needs labeled texts"):
        model.score(texts[:4], [-1] * 4)


# -- sklearn's contract: fit leaves the parameters as they were given ---------------------------
def _typed_params(estimator):
    return {name: (type(value), value) for name, value in estimator.get_params(deep=False).items()}


@pytest.mark.parametrize("make", [
    lambda vae: BNVAE(**dict(TINY, max_epochs=np.int64(1), latent_dim=np.int64(4),
                             hidden_dim=np.int32(16), dropout_in=np.float64(0.2),
                             lowercase=np.bool_(True))),
    lambda vae: FineTunedBNVAEClassifier(FrozenEstimator(vae), fine_tuning_max_epochs=np.int64(1),
                                         fine_tuning_lr=np.float64(1e-3), dropout=np.float32(0.1),
                                         fine_tuning_batch_size=np.int64(16), random_state=0,
                                         verbose=np.int64(0)),
], ids=["bnvae", "fine_tuned"])
def test_fit_does_not_change_the_parameters(fitted_vae, make):
    texts, labels = make_corpus(60, seed=9)
    estimator = make(fitted_vae)
    before = _typed_params(estimator)
    if isinstance(estimator, BNVAE):
        estimator.fit(texts)
        assert type(estimator.n_features_out_) is int and estimator.transform(texts[:2]).shape == (2, 4)
    else:
        estimator.fit(texts, labels)
    assert _typed_params(estimator) == before
    assert _typed_params(clone(estimator)) == before


def test_grid_search_over_a_numpy_grid_leaves_the_grid_values(corpus):
    texts, labels = list(corpus[0][:60]), corpus[1][:60]
    search = GridSearchCV(BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1))),
                          {"vae__latent_dim": np.array([2, 4])}, cv=2, error_score="raise").fit(texts, labels)
    assert type(search.best_estimator_.vae_.latent_dim) is np.int64   # as the grid gave it
    assert search.best_estimator_.vae_.n_features_out_ == search.best_params_["vae__latent_dim"]


def test_the_bf16_probe_leaves_the_global_rng_as_it_was():
    from ssl_textvae.runtime import devices as runtime

    runtime.cpu_runs_bf16_lstm.cache_clear()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    runtime.cpu_runs_bf16_lstm()          # first call: builds and runs its LSTM
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())
