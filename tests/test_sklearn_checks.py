"""scikit-learn's estimator checks on every public estimator, with the string-input tags.

``check_estimator`` runs no check on an estimator whose tags say X is text (it
cannot make text input). Every check it would run on a numeric estimator of the
same kind is accounted for below: run as is (it needs no input, or fails before
reading it), tested here by hand on texts, or skipped because it feeds numeric
arrays; ``test_every_check_is_accounted_for`` fails when scikit-learn adds one.
"""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.frozen import FrozenEstimator
from sklearn.utils import TransformerTags, estimator_checks, get_tags
from sklearn.utils.validation import check_is_fitted

from ssl_textvae import BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier

from conftest import make_corpus

ESTIMATORS = [BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier]
RUN = {  # need no input data, or fail on the unfitted estimator before reading it
    "check_no_attributes_set_in_init", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
    "check_estimator_repr", "check_estimator_tags_renamed", "check_valid_tag_types",
    "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
    "check_estimators_unfitted", "check_transformers_unfitted",
}
ON_TEXT = {  # the same property, tested below on texts
    "check_estimators_fit_returns_self", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_dict_unchanged", "check_dont_overwrite_parameters", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_classifiers_train", "check_classifiers_classes",
    "check_classifiers_one_label", "check_decision_proba_consistency", "check_fit_score_takes_y",
}
NUMERIC_ONLY = {  # feed arrays of numbers (dtypes, sparsity, NaN, shapes, memmaps, array API)
    "check_array_api_input", "check_classifier_data_not_an_array", "check_complex_data",
    "check_dtype_object", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag", "check_estimators_dtypes", "check_estimators_empty_data_messages",
    "check_estimators_nan_inf", "check_estimators_partial_fit_n_features",
    "check_f_contiguous_array_estimator", "check_fit1d", "check_fit2d_1feature",
    "check_fit2d_1sample", "check_fit2d_predict1d", "check_n_features_in",
    "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input", "check_requires_y_none", "check_supervised_y_2d",
    "check_supervised_y_no_nan", "check_classifiers_regression_target",
    "check_classifiers_one_label_sample_weights", "check_pipeline_consistency",
    "check_transformer_data_not_an_array", "check_transformer_general", "check_transformer_n_iter",
    "check_transformer_preserve_dtypes", "check_non_transformer_estimators_n_iter",
}
SMALL = dict(embed_dim=8, hidden_dim=16, latent_dim=4, max_epochs=1, batch_size=16, verbose=0,
             random_state=0)


def checks_for_numeric_input(Estimator):
    """The names of the checks scikit-learn runs on ``Estimator`` with numeric-input tags."""
    def numeric_tags(self):
        tags = super(Estimator, self).__sklearn_tags__()   # before the string-input tags
        tags.transformer_tags = tags.transformer_tags or TransformerTags()
        return tags

    numeric = type("Numeric" + Estimator.__name__, (Estimator,), {"__sklearn_tags__": numeric_tags})
    return {getattr(check, "func", check).__name__
            for _, check in estimator_checks.estimator_checks_generator(numeric(), legacy=True)}


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_tags_say_string_input_so_check_estimator_skips_numeric_checks(Estimator):
    tags = get_tags(Estimator())
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = estimator_checks.check_estimator(Estimator(), on_skip=None, on_fail=None)
    assert any(issubclass(w.category, SkipTestWarning) and "string=True" in str(w.message)
               for w in caught)
    assert all(result["status"] == "passed" for result in results)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_every_check_is_accounted_for(Estimator):
    assert not RUN & ON_TEXT and not RUN & NUMERIC_ONLY and not ON_TEXT & NUMERIC_ONLY
    unaccounted = checks_for_numeric_input(Estimator) - RUN - ON_TEXT - NUMERIC_ONLY
    assert not unaccounted, f"new scikit-learn checks to sort into RUN, ON_TEXT or NUMERIC_ONLY: {unaccounted}"


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_input_independent_checks(Estimator):
    for name in sorted(RUN & checks_for_numeric_input(Estimator)):
        getattr(estimator_checks, name)(Estimator.__name__, Estimator())


# -- the rest, by hand on texts --------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    texts, labels = make_corpus(120, seed=31)
    return texts, labels, make_corpus(40, seed=32)[0]


def make(Estimator, vae):
    if Estimator is BNVAE:
        return BNVAE(**SMALL)
    if Estimator is BNVAEClassifier:
        return BNVAEClassifier(vae=FrozenEstimator(vae))
    return FineTunedBNVAEClassifier(vae=FrozenEstimator(vae), fine_tuning_max_epochs=1,
                                    random_state=0, verbose=0)


def outputs(estimator, texts):
    names = ("transform", "predict", "predict_proba", "decision_function")
    return {name: getattr(estimator, name)(texts) for name in names if hasattr(estimator, name)}


@pytest.mark.precision   # "it learns": an accuracy threshold, rerun under fp32 by .ci/run
@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_contract_on_texts(Estimator, fitted_vae, data):
    texts, labels, new = data
    estimator = make(Estimator, fitted_vae)
    params = repr(estimator.get_params())
    with pytest.raises(NotFittedError):
        check_is_fitted(estimator)
    assert estimator.fit(texts, labels) is estimator                      # fit returns self; y taken
    check_is_fitted(estimator)
    assert repr(estimator.get_params()) == params                        # parameters not overwritten
    added = set(vars(estimator)) - set(vars(make(Estimator, fitted_vae)))
    assert all(name.endswith("_") for name in added), added             # fit adds only name_ attributes
    before = outputs(estimator, new)
    state = {k: repr(v) for k, v in vars(estimator).items() if k != "vae"}
    again = outputs(estimator, new)
    assert {k: repr(v) for k, v in vars(estimator).items() if k != "vae"} == state  # dict unchanged
    order = np.random.default_rng(0).permutation(len(new))
    for name, value in before.items():
        np.testing.assert_array_equal(value, again[name])
        shuffled = getattr(estimator, name)([new[i] for i in order])      # sample order invariance
        np.testing.assert_allclose(shuffled, value[order], rtol=1e-5, atol=1e-6)
        for start, stop in ((0, 13), (13, len(new))):                      # subset invariance
            np.testing.assert_allclose(getattr(estimator, name)(new[start:stop]), value[start:stop],
                                       rtol=1e-5, atol=1e-6)
    refit = clone(estimator).fit(texts, labels)                           # fit idempotent
    for name, value in outputs(refit, new).items():
        np.testing.assert_allclose(value, before[name], rtol=1e-5, atol=1e-6)
    restored = pickle.loads(pickle.dumps(estimator))                      # pickle
    for name, value in outputs(restored, new).items():
        np.testing.assert_allclose(value, before[name], rtol=1e-6, atol=1e-7)
    if Estimator is not BNVAE:                                            # classifiers
        proba, decision = before["predict_proba"], before["decision_function"]
        np.testing.assert_array_equal(before["predict"], estimator.classes_[proba.argmax(1)])
        np.testing.assert_array_equal(proba[:, 1] > 0.5, decision > 0)   # decision/proba consistent
        assert estimator.score(*make_corpus(60, seed=33)) > 0.7          # it learns
        names = np.array(["neg", "pos"])[labels]                           # classes of any type
        assert list(clone(estimator).fit(texts, names).classes_) == ["neg", "pos"]
        with pytest.raises(ValueError, match="only one class"):            # one label refused
            clone(estimator).fit(texts, np.zeros(len(texts), dtype=int))
