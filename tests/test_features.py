"""Word features beside the latent means (``BNVAEClassifier(word_weight=...)``)."""

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from conftest import TINY, make_corpus
from ssl_textvae import BNVAE, BNVAEClassifier, load

# The accuracies and margins below are of models trained in fp32: the tests are about the
# word features, not bf16 (under AMX bf16 the margin of the tuning test fell to 0.19).
pytestmark = pytest.mark.precision
FP32 = dict(TINY, precision="fp32")


@pytest.fixture(scope="module")
def vae_blind_to_the_label_words():
    """A VAE pretrained on texts without "alpha" or "beta": to it both are unknown words."""
    return BNVAE(**FP32).fit(make_corpus(300)[0])


def _words_decide(n, seed):
    """Texts of the VAE's own words plus "alpha" or "beta", which alone set the label."""
    texts, sentiment = make_corpus(n, seed=seed)
    y = np.random.default_rng(seed + 1000).integers(0, 2, n)   # not the corpus's own labels
    return [f"{t} {'alpha' if label else 'beta'}" for t, label in zip(texts, y)], y


def test_word_features_carry_what_the_means_cannot(vae_blind_to_the_label_words):
    X, y = _words_decide(120, seed=3)
    X_test, y_test = _words_decide(200, seed=4)
    frozen = FrozenEstimator(vae_blind_to_the_label_words)
    means_only = BNVAEClassifier(vae=frozen).fit(X, y)
    with_words = BNVAEClassifier(vae=frozen, word_weight=1.0).fit(X, y)
    assert means_only.words_ is None and means_only.scaler_ is None
    assert with_words.score(X_test, y_test) >= 0.95
    assert means_only.score(X_test, y_test) < 0.75
    # One coefficient per latent dimension and per word (or word pair) of the TF-IDF.
    n_words = len(with_words.words_.vocabulary_)
    assert with_words.estimator_.coef_.shape[1] == TINY["latent_dim"] + n_words
    np.testing.assert_array_equal(with_words.transform(X_test[:3]), means_only.transform(X_test[:3]))


def test_words_are_fitted_on_the_unlabeled_rows_too(vae_blind_to_the_label_words):
    X, y = _words_decide(60, seed=5)
    y = np.asarray(y).copy()
    X = X + ["gamma delta epsilon", "gamma delta epsilon"]
    y = np.concatenate([y, [-1, -1]])
    clf = BNVAEClassifier(vae=FrozenEstimator(vae_blind_to_the_label_words), word_weight=0.5).fit(X, y)
    assert "gamma delta" in clf.words_.vocabulary_


def test_save_and_load_keep_the_word_features(vae_blind_to_the_label_words, tmp_path):
    X, y = _words_decide(80, seed=6)
    clf = BNVAEClassifier(vae=FrozenEstimator(vae_blind_to_the_label_words), word_weight=2.0).fit(X, y)
    clf.save(tmp_path)
    loaded = load(tmp_path)
    assert loaded.word_weight == 2.0
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("weight", [-0.5, float("nan"), "1", True])
def test_a_bad_word_weight_says_what_is_expected(vae_blind_to_the_label_words, weight):
    X, y = _words_decide(20, seed=7)
    with pytest.raises(ValueError, match=r"'word_weight' parameter.* must be a float in the range \[0, inf\)"):
        BNVAEClassifier(vae=FrozenEstimator(vae_blind_to_the_label_words), word_weight=weight).fit(X, y)


def test_texts_without_countable_words_are_refused(vae_blind_to_the_label_words):
    with pytest.raises(ValueError, match="word_weight > 0 needs words"):
        BNVAEClassifier(vae=FrozenEstimator(vae_blind_to_the_label_words),
                        word_weight=1.0).fit(["!", "?", "!", "?"], [0, 1, 0, 1])


def test_tune_searches_the_word_weight(vae_blind_to_the_label_words):
    optuna = pytest.importorskip("optuna")
    from sklearn.linear_model import LogisticRegression

    from ssl_textvae.tuning import TuningObjective, build_classifier, tune

    X, y = _words_decide(80, seed=8)
    fixed = {f"vae__{k}": v for k, v in FP32.items() if k not in ("random_state", "verbose")}
    fixed["vae__max_epochs"] = 1
    grid = {"word_weight": [0.0, 1.0]}
    study = tune(X, y, n_trials=2, search_space=grid, fixed_params=fixed, cv_splits=3, cv_repeats=1,
                 random_state=0, sampler=optuna.samplers.GridSampler(grid, seed=0), verbose=0)
    assert sorted(t.params["word_weight"] for t in study.trials) == [0.0, 1.0]
    assert build_classifier(study).word_weight == study.best_params["word_weight"]
    # The objective scores the word features: on a VAE blind to the label words they win.
    objective = TuningObjective(X, y, search_space=grid, fixed_params=fixed, cv_splits=3, cv_repeats=1)
    head = LogisticRegression(C=10.0, max_iter=1000)   # 53 texts a fold: less regularization
    blind = vae_blind_to_the_label_words
    with_words, means_only = (objective.cv_accuracy(blind, head, w).mean() for w in (1.0, 0.0))
    # Margins seen: 0.176 (fp32, AVX-512), 0.189 (bf16, AMX), 0.214 (fp32, AVX2): the means
    # read the <unk> the label word leaves, the words read the word itself.
    assert with_words >= 0.85 and with_words - means_only >= 0.15, (with_words, means_only)


def test_predict_uses_the_weight_fit_used(vae_blind_to_the_label_words):
    X, y = _words_decide(60, seed=9)
    clf = BNVAEClassifier(vae=FrozenEstimator(vae_blind_to_the_label_words), word_weight=2.0).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(word_weight=0.0)           # a parameter change takes effect at the next fit
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    assert clf.word_weight_ == 2.0
