"""BNVAEClassifier: the VAE as a nested parameter, reuse through FrozenEstimator, bad input."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from ssl_textvae import BNVAE, BNVAEClassifier

from conftest import TINY, check_classifier_outputs, make_corpus

TEXTS = ["the food was good", "the staff was rude", "great place", "cold food"]
LABELS = [1, 0, 1, 0]


# -- one place for the VAE's settings ------------------------------------------------------
def test_nested_vae_parameters_get_set_and_clone():
    head = LogisticRegression(C=2.0)
    classifier = BNVAEClassifier(vae=BNVAE(latent_dim=8), estimator=head)
    params = classifier.get_params()
    assert params["vae__latent_dim"] == 8 and params["estimator__C"] == 2.0
    assert set(classifier.get_params(deep=False)) == {"vae", "estimator", "word_weight", "embedding_weight"}
    assert classifier.set_params(vae__gamma=0.2, estimator__C=3.0) is classifier
    assert classifier.vae.gamma == 0.2 and head.C == 3.0
    copy = clone(classifier)
    assert copy.vae is not classifier.vae and copy.vae.get_params() == classifier.vae.get_params()
    assert copy.estimator is not head and copy.estimator.C == 3.0


def test_grid_search_over_vae_and_head_parameters(labeled, count_pretraining):
    texts, labels = labeled
    classifier = BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1)), estimator=LogisticRegression())
    search = GridSearchCV(classifier, {"vae__gamma": [0.5, 1.0], "estimator__C": [1.0]}, cv=2)
    search.fit(texts, labels)
    assert len(count_pretraining) == 2 * 2 + 1   # a VAE per candidate and fold, and the refit
    assert search.best_estimator_.vae_.gamma == search.best_params_["vae__gamma"]
    assert classifier.vae.gamma == 0.7 and not hasattr(classifier.vae, "module_")


@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_frozen_vae_is_reused_without_pretraining(fitted_vae, labeled, count_pretraining):
    texts, labels = labeled
    frozen = FrozenEstimator(fitted_vae)
    classifier = BNVAEClassifier(vae=frozen, estimator=LogisticRegression())
    assert clone(classifier).vae is frozen   # clone shares a frozen estimator
    search = GridSearchCV(classifier, {"estimator__C": [0.1, 10.0]}, cv=3).fit(texts, labels)
    assert count_pretraining == []
    assert search.best_estimator_.vae_ is fitted_vae
    assert search.best_score_ > 0.7
    with pytest.warns(UserWarning, match="unlabeled texts are ignored"):
        BNVAEClassifier(vae=frozen).fit(texts, labels, unlabeled=texts)


def test_a_fitted_vae_not_frozen_is_pretrained_again_with_a_warning(fitted_vae, count_pretraining):
    texts, labels = make_corpus(60, seed=2)
    vae = clone(fitted_vae).set_params(max_epochs=1)
    vae.fit(texts)
    with pytest.warns(UserWarning, match=r"already fitted; fit clones it and pretrains it again.*"
                                         r"FrozenEstimator\(vae\)"):
        classifier = BNVAEClassifier(vae=vae).fit(texts, labels)
    assert len(count_pretraining) == 2 and classifier.vae_ is not vae


def test_predict_uses_the_fitted_vae_not_the_parameter(fitted_classifier, held_out):
    before = fitted_classifier.predict_proba(held_out[0])
    parameter = fitted_classifier.vae
    try:
        fitted_classifier.set_params(vae=BNVAE(latent_dim=2))
        np.testing.assert_array_equal(fitted_classifier.predict_proba(held_out[0]), before)
    finally:
        fitted_classifier.set_params(vae=parameter)


def test_vae_parameter_errors(corpus, semi_labels):
    with pytest.raises(TypeError, match="vae must be a BNVAE .* or None, got LogisticRegression"):
        BNVAEClassifier(vae=LogisticRegression()).fit(corpus[0], semi_labels)
    with pytest.raises(TypeError, match=r"must wrap a fitted BNVAE, got FrozenEstimator\(Logistic"):
        BNVAEClassifier(vae=FrozenEstimator(LogisticRegression())).fit(corpus[0], semi_labels)
    with pytest.raises(NotFittedError, match="The BNVAE inside FrozenEstimator is not fitted yet"):
        BNVAEClassifier(vae=FrozenEstimator(BNVAE())).fit(corpus[0], semi_labels)


# -- behaviour ------------------------------------------------------------------------------
def test_fit_returns_self_and_classes_exclude_unlabeled(fitted_classifier, fitted_vae, corpus,
                                                        semi_labels):
    np.testing.assert_array_equal(fitted_classifier.classes_, [0, 1])
    assert fitted_classifier.history_ == fitted_classifier.vae_.history_
    classifier = BNVAEClassifier(vae=FrozenEstimator(fitted_vae))
    assert classifier.fit(corpus[0], semi_labels) is classifier
    assert classifier.vae_ is fitted_vae


@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_classifier_learns_the_synthetic_labels(fitted_classifier, held_out):
    texts, labels = held_out
    assert fitted_classifier.score(texts, labels) > 0.8
    check_classifier_outputs(fitted_classifier, texts)
    assert fitted_classifier.transform(texts).shape == (len(texts), TINY["latent_dim"])


@pytest.mark.precision   # accuracy thresholds: rerun under fp32 by .ci/run
def test_string_labels_with_string_unlabeled_marker(fitted_vae, corpus, held_out):
    y = np.where(corpus[1] == 1, "pos", "neg").astype(object)
    y[40:] = "-1"
    classifier = BNVAEClassifier(vae=FrozenEstimator(fitted_vae)).fit(corpus[0], list(y))
    np.testing.assert_array_equal(classifier.classes_, ["neg", "pos"])
    assert set(classifier.predict(held_out[0])) <= {"neg", "pos"}
    assert classifier.score(held_out[0], np.where(held_out[1] == 1, "pos", "neg")) > 0.8


def test_unlabeled_pool_is_used_for_pretraining_only(corpus, semi_labels):
    texts, _ = corpus
    labeled_texts, labels = texts[:40], semi_labels[:40]
    vae = BNVAE(**dict(TINY, max_epochs=1))
    pool = texts[40:200] + ["zebra food was good"] * 4        # a word only the pool holds
    classifier = BNVAEClassifier(vae=vae).fit(labeled_texts, labels, unlabeled=pool)
    assert classifier.estimator_.n_features_in_ == TINY["latent_dim"]
    assert classifier.vae_.tokenizer_.vocab_size == clone(vae).fit(labeled_texts).tokenizer_.vocab_size + 1
    with pytest.raises(TypeError, match="one-shot iterator"):
        BNVAEClassifier(vae=vae).fit(labeled_texts, labels, unlabeled=iter(texts[40:]))


def test_pickle_round_trip(fitted_classifier, held_out):
    copy = pickle.loads(pickle.dumps(fitted_classifier))
    np.testing.assert_array_equal(copy.predict_proba(held_out[0]),
                                  fitted_classifier.predict_proba(held_out[0]))
    assert copy.history_ == fitted_classifier.history_


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("X, y, error, match", [
    ("the food was good", LABELS, TypeError, "got a single str"),
    (["the food", 3, "good", "bad"], LABELS, TypeError, "item 1 is int"),
    (None, LABELS, ValueError, "got None"),
    ([], [], ValueError, "Found 0 texts"),
    (["the food", "", "good", "bad"], LABELS, ValueError, "Item 1 of X is empty or whitespace"),
    (["the food", "  \t", "good", "bad"], LABELS, ValueError, "Item 1 of X is empty or whitespace"),
    (np.array([TEXTS]), LABELS, ValueError, "1-d list of texts"),
    (TEXTS, [1, 0, 1], ValueError, "inconsistent numbers of samples: 4 texts, 3 labels"),
    (TEXTS, None, ValueError, "y is None"),
    (TEXTS, [-1, -1, -1, -1], ValueError, "Every label is -1"),
    (TEXTS, [1, -1, 1, -1], ValueError, "only one class"),
    (TEXTS, [1.0, np.nan, 0.0, 1.0], ValueError, "y holds NaN values"),
    (TEXTS, [1.0, 0.0, 0.0, 1.0], ValueError, "y holds float values"),
    (TEXTS, np.array([1, "a", 0, 1], dtype=object), ValueError, "mixes label types"),
    (TEXTS, np.array([1, None, 0, 1], dtype=object), ValueError, "mixes label types"),
    (TEXTS, [[1], [0], [1], [0]], ValueError, "Expected y to be 1-d"),
])
def test_fit_rejects_bad_input(X, y, error, match):
    with pytest.raises(error, match=match):
        BNVAEClassifier(vae=BNVAE(**TINY)).fit(X, y)


def test_out_of_range_vae_params_raise_at_fit():
    classifier = BNVAEClassifier(vae=BNVAE(**TINY)).set_params(vae__latent_dim=0)
    with pytest.raises(ValueError, match=r"The 'latent_dim' parameter of BNVAE must be an int in "
                                         r"the range \[1, inf\)\. Got 0"):
        classifier.fit(TEXTS, LABELS)


def test_predict_before_fit_raises():
    for method in ("predict", "predict_proba", "decision_function", "transform"):
        with pytest.raises(NotFittedError):
            getattr(BNVAEClassifier(), method)(TEXTS)


def test_score_leaves_the_unlabeled_rows_out(fitted_classifier):
    assert fitted_classifier.score(TEXTS, [1, -1, 0, 1]) == fitted_classifier.score(
        [TEXTS[0], TEXTS[2], TEXTS[3]], [1, 0, 1])
    with pytest.raises(ValueError, match="Every label of y is -1"):
        fitted_classifier.score(TEXTS, [-1] * 4)


def test_predict_rejects_bad_texts(fitted_classifier):
    with pytest.raises(TypeError, match="single str"):
        fitted_classifier.predict("the food was good")
    with pytest.warns(UserWarning, match="1 of 2 texts are empty"):   # a row per text sent
        assert len(fitted_classifier.predict(["good", " "])) == 2


def test_out_of_vocabulary_texts(fitted_classifier):
    with pytest.warns(UserWarning, match="0 of 2 texts are empty and 2 consist of out-of-vocabulary"):
        assert len(fitted_classifier.predict(["zebra giraffe", "quantum"])) == 2
    with pytest.warns(UserWarning, match="0 of 2 texts are empty and 1 consist of out-of-vocabulary"):
        predicted = fitted_classifier.predict(["zebra giraffe", "the food was good"])
    assert len(predicted) == 2
