"""BNVAE and BNVAEClassifier against the scikit-learn estimator contract, and bad input."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks

from ssl_textvae import BNVAE, BNVAEClassifier, TextFile
from ssl_textvae import estimator as estimator_module

from conftest import TINY, make_corpus

# The checks that need no input data. The rest of check_estimator feeds numeric arrays,
# which a text estimator rejects; those properties are tested by hand on texts below.
INPUT_INDEPENDENT_CHECKS = [
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    # feeds numeric X, but to an unfitted estimator, which must raise NotFittedError first
    "check_estimators_unfitted",
]


@pytest.fixture(scope="module")
def held_out():
    return make_corpus(200, seed=7)


@pytest.fixture(scope="module")
def labeled():
    texts, labels = make_corpus(90, seed=11)
    return texts, labels


@pytest.mark.parametrize("check", INPUT_INDEPENDENT_CHECKS)
@pytest.mark.parametrize("Estimator", [BNVAE, BNVAEClassifier])
def test_sklearn_input_independent_checks(Estimator, check):
    getattr(estimator_checks, check)(Estimator.__name__, Estimator())


# -- contract -------------------------------------------------------------------------------
def test_get_params_set_params_and_clone(fitted_vae):
    head = LogisticRegression(C=2.0)
    classifier = BNVAEClassifier(estimator=head, vae=fitted_vae, latent_dim=4)
    params = classifier.get_params()
    assert params["latent_dim"] == 4 and params["estimator__C"] == 2.0 and params["vae"] is fitted_vae
    assert classifier.set_params(estimator__C=3.0, gamma=0.2) is classifier
    assert head.C == 3.0 and classifier.gamma == 0.2
    copy = clone(classifier)
    assert copy.vae is fitted_vae  # shared, never re-pretrained
    assert copy.estimator is not head and copy.estimator.C == 3.0
    assert copy.get_params(deep=False).keys() == classifier.get_params(deep=False).keys()
    vae_copy = clone(BNVAE(latent_dim=5, random_state=3))
    assert vae_copy.get_params() == BNVAE(latent_dim=5, random_state=3).get_params()


def test_fit_returns_self_and_classes_exclude_unlabeled(fitted_classifier, fitted_vae, corpus,
                                                        semi_labels):
    np.testing.assert_array_equal(fitted_classifier.classes_, [0, 1])
    assert fitted_classifier.vae_ is not None and fitted_classifier.history_
    classifier = BNVAEClassifier(vae=fitted_vae)
    assert classifier.fit(corpus[0], semi_labels) is classifier
    assert classifier.vae_ is fitted_vae
    np.testing.assert_array_equal(classifier.classes_, [0, 1])


def test_bnvae_fit_returns_self_and_transform_shape(corpus):
    vae = BNVAE(**dict(TINY, max_epochs=1, latent_dim=3))
    assert vae.fit(corpus[0][:100]) is vae
    assert vae.transform(corpus[0][:7]).shape == (7, 3)
    assert vae.n_features_out_ == 3
    assert list(vae.get_feature_names_out()) == ["bnvae_mu0", "bnvae_mu1", "bnvae_mu2"]


def test_classifier_learns_the_synthetic_labels(fitted_classifier, held_out):
    texts, labels = held_out
    assert fitted_classifier.score(texts, labels) > 0.8
    probabilities = fitted_classifier.predict_proba(texts)
    assert probabilities.shape == (len(texts), 2)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-6)
    assert fitted_classifier.decision_function(texts).shape == (len(texts),)
    assert fitted_classifier.transform(texts).shape == (len(texts), TINY["latent_dim"])


def test_string_labels_with_string_unlabeled_marker(fitted_vae, corpus, held_out):
    y = np.where(corpus[1] == 1, "pos", "neg").astype(object)
    y[40:] = "-1"
    classifier = BNVAEClassifier(vae=fitted_vae).fit(corpus[0], list(y))
    np.testing.assert_array_equal(classifier.classes_, ["neg", "pos"])
    predicted = classifier.predict(held_out[0])
    assert set(predicted) <= {"neg", "pos"}
    assert classifier.score(held_out[0], np.where(held_out[1] == 1, "pos", "neg")) > 0.8


def test_transform_on_a_batch_remainder_of_one_text(fitted_vae, held_out):
    # 1025 texts: one full evaluation batch plus a single text, merged into it.
    texts = (held_out[0] * 6)[:1025]
    means = fitted_vae.transform(texts)
    np.testing.assert_allclose(means[:200], fitted_vae.transform(held_out[0]), atol=1e-5)
    np.testing.assert_allclose(means[1000:], fitted_vae.transform(texts[1000:]), atol=1e-5)


def test_in_a_pipeline(labeled):
    texts, labels = labeled
    pipeline = make_pipeline(BNVAE(**dict(TINY, max_epochs=1)), LogisticRegression())
    pipeline.fit(texts, labels)
    assert set(pipeline.predict(texts[:10])) <= {0, 1}
    np.testing.assert_array_equal(pipeline.named_steps["logisticregression"].classes_, [0, 1])
    np.testing.assert_array_equal(pipeline[:-1].transform(texts[:10]),
                                  pipeline.named_steps["bnvae"].transform(texts[:10]))


def test_grid_search_over_the_head_reuses_the_pretrained_vae(fitted_vae, labeled, monkeypatch):
    def no_pretraining(*args, **kwargs):
        raise AssertionError("GridSearchCV pretrained a VAE again")

    monkeypatch.setattr(estimator_module, "pretrain", no_pretraining)
    texts, labels = labeled
    classifier = BNVAEClassifier(estimator=LogisticRegression(), vae=fitted_vae)
    search = GridSearchCV(classifier, {"estimator__C": [0.1, 10.0]}, cv=3)
    search.fit(texts, labels)
    assert search.best_params_["estimator__C"] in (0.1, 10.0)
    assert search.best_estimator_.vae_ is fitted_vae
    assert search.best_score_ > 0.7


def test_pickle_round_trip(fitted_classifier, held_out):
    copy = pickle.loads(pickle.dumps(fitted_classifier))
    np.testing.assert_array_equal(copy.predict_proba(held_out[0]),
                                  fitted_classifier.predict_proba(held_out[0]))
    assert copy.history_ == fitted_classifier.history_
    vae = pickle.loads(pickle.dumps(fitted_classifier.vae_))
    assert not vae.module_.training
    np.testing.assert_array_equal(vae.transform(held_out[0]),
                                  fitted_classifier.vae_.transform(held_out[0]))


def test_unfitted_bnvae_pickles():
    copy = pickle.loads(pickle.dumps(BNVAE(latent_dim=3)))
    assert copy.latent_dim == 3 and not hasattr(copy, "module_")


# -- bad input -----------------------------------------------------------------------------
TEXTS = ["the food was good", "the staff was rude", "great place", "cold food"]
LABELS = [1, 0, 1, 0]


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
def test_classifier_fit_rejects_bad_input(X, y, error, match):
    with pytest.raises(error, match=match):
        BNVAEClassifier(**TINY).fit(X, y)


@pytest.mark.parametrize("name, value, expected", [
    ("latent_dim", 0, r"an int in the range \[1, inf\)"),
    ("latent_dim", 2.0, r"an int in the range \[1, inf\)"),
    ("gamma", -0.1, r"a float in the range \[0, inf\) or None"),
    ("batch_size", 0, r"an int in the range \[2, inf\)"),
    ("batch_size", 1, r"an int in the range \[2, inf\)"),
    ("max_epochs", -1, r"an int in the range \[0, inf\)"),
    ("lr", 0.0, r"a float in the range \(0, inf\)"),
    ("dropout_in", 1.0, r"a float in the range \[0, 1\)"),
    ("validation_fraction", 1.0, r"a float in the range \(0, 1\)"),
    ("tokenizer", "char", r"a str among \{'word', 'bpe'\}"),
    ("optimizer", "rmsprop", r"a str among \{'sgd', 'adam'\}"),
])
@pytest.mark.parametrize("Estimator", [BNVAE, BNVAEClassifier])
def test_out_of_range_params_raise_at_fit(Estimator, name, value, expected):
    estimator = Estimator(**dict(TINY, **{name: value}))  # no error at construction
    message = f"The '{name}' parameter of {Estimator.__name__} must be {expected}. Got {value!r}"
    with pytest.raises(ValueError, match=message):
        estimator.fit(TEXTS, LABELS) if Estimator is BNVAEClassifier else estimator.fit(TEXTS)


def test_predict_before_fit_raises():
    for method in ("predict", "predict_proba", "decision_function", "transform"):
        with pytest.raises(NotFittedError):
            getattr(BNVAEClassifier(), method)(TEXTS)
    with pytest.raises(NotFittedError):
        BNVAE().transform(TEXTS)


def test_score_rejects_unlabeled_marker(fitted_classifier):
    with pytest.raises(ValueError, match="score needs a label for every text"):
        fitted_classifier.score(TEXTS, [1, -1, 0, 1])


def test_predict_rejects_bad_texts(fitted_classifier):
    with pytest.raises(TypeError, match="single str"):
        fitted_classifier.predict("the food was good")
    with pytest.raises(ValueError, match="empty or whitespace"):
        fitted_classifier.predict(["good", " "])


def test_out_of_vocabulary_texts(fitted_classifier):
    with pytest.raises(ValueError, match="out-of-vocabulary tokens only"):
        fitted_classifier.predict(["zebra giraffe", "quantum"])
    with pytest.warns(UserWarning, match="1 of 2 texts consist of out-of-vocabulary tokens only"):
        predicted = fitted_classifier.predict(["zebra giraffe", "the food was good"])
    assert len(predicted) == 2


def test_vae_must_be_a_fitted_bnvae(corpus, semi_labels):
    with pytest.raises(NotFittedError, match="The BNVAE passed as vae is not fitted yet"):
        BNVAEClassifier(vae=BNVAE()).fit(corpus[0], semi_labels)
    with pytest.raises(TypeError, match="vae must be a fitted BNVAE or None, got LogisticRegression"):
        BNVAEClassifier(vae=LogisticRegression()).fit(corpus[0], semi_labels)


def test_bnvae_fit_rejects_bad_text_sources():
    with pytest.raises(TypeError, match="single string"):
        BNVAE(**TINY).fit("the food was good")
    with pytest.raises(TypeError, match="one-shot iterator"):
        BNVAE(**TINY).fit(text for text in TEXTS)
    with pytest.raises(ValueError, match="Found 1 non-empty texts to pretrain on; expected at least 4"):
        with pytest.warns(UserWarning, match="Skipped 2 empty"):
            BNVAE(**TINY).fit(["good food", "", " "])


def test_unlabeled_pool_is_used_for_pretraining_only(corpus, semi_labels):
    texts, _ = corpus
    labeled_texts, labels = texts[:40], semi_labels[:40]
    classifier = BNVAEClassifier(**dict(TINY, max_epochs=1)).fit(labeled_texts, labels,
                                                                unlabeled=texts[40:200])
    assert classifier.estimator_.n_features_in_ == TINY["latent_dim"]
    # the vocabulary saw the pool; 40 labeled texts alone would leave some words out
    assert classifier.vae_.tokenizer_.vocab_size >= BNVAE(**dict(TINY, max_epochs=1)).fit(
        labeled_texts).tokenizer_.vocab_size
    with pytest.raises(TypeError, match="one-shot iterator"):
        BNVAEClassifier(**TINY).fit(labeled_texts, labels, unlabeled=iter(texts[40:]))


def test_bnvae_fits_from_a_text_file_and_a_dataset(corpus, tmp_path):
    datasets = pytest.importorskip("datasets")
    texts = corpus[0][:120]
    path = tmp_path / "pool.txt"
    path.write_text("\n".join(texts) + "\n\n", encoding="utf-8")  # a trailing blank line
    params = dict(TINY, max_epochs=1)
    reference = BNVAE(**params).fit(texts).transform(texts[:20])
    with pytest.warns(UserWarning, match="Skipped 1 empty"):
        from_file = BNVAE(**params).fit(TextFile(path))
    dataset = datasets.Dataset.from_dict({"label": [0] * len(texts), "text": texts})
    from_dataset = BNVAE(**params).fit(dataset)
    # same texts in the same order: the same model
    np.testing.assert_allclose(from_file.transform(texts[:20]), reference, atol=1e-6)
    np.testing.assert_allclose(from_dataset.transform(texts[:20]), reference, atol=1e-6)
