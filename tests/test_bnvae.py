"""BNVAE, the pretrained language model as a transformer: contract and bad input."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from ssl_textvae import BNVAE, TextFile

from conftest import TINY, make_corpus

TEXTS = ["the food was good", "the staff was rude", "great place", "cold food"]


def test_clone_keeps_the_parameters():
    vae_copy = clone(BNVAE(latent_dim=5, random_state=3))
    assert vae_copy.get_params() == BNVAE(latent_dim=5, random_state=3).get_params()


def test_fit_returns_self_and_transform_shape(corpus, count_pretraining):
    vae = BNVAE(**dict(TINY, max_epochs=1, latent_dim=3))
    assert vae.fit(corpus[0][:100]) is vae
    assert len(count_pretraining) == 1
    assert vae.transform(corpus[0][:7]).shape == (7, 3)
    assert vae.n_features_out_ == 3
    assert list(vae.get_feature_names_out()) == ["bnvae_mu0", "bnvae_mu1", "bnvae_mu2"]


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


def test_pickle_round_trip(fitted_vae, held_out):
    vae = pickle.loads(pickle.dumps(fitted_vae))
    assert not vae.module_.training
    np.testing.assert_array_equal(vae.transform(held_out[0]), fitted_vae.transform(held_out[0]))


def test_unfitted_bnvae_pickles():
    copy = pickle.loads(pickle.dumps(BNVAE(latent_dim=3)))
    assert copy.latent_dim == 3 and not hasattr(copy, "module_")


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
def test_out_of_range_params_raise_at_fit(name, value, expected):
    estimator = BNVAE(**dict(TINY, **{name: value}))  # no error at construction
    with pytest.raises(ValueError, match=f"The '{name}' parameter of BNVAE must be {expected}. "
                                         f"Got {value!r}"):
        estimator.fit(TEXTS)


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError):
        BNVAE().transform(TEXTS)


def test_fit_rejects_bad_text_sources():
    with pytest.raises(TypeError, match="single string"):
        BNVAE(**TINY).fit("the food was good")
    with pytest.raises(TypeError, match="one-shot iterator"):
        BNVAE(**TINY).fit(text for text in TEXTS)
    with pytest.raises(TypeError, match="Expected every item of X to be a str; item 1 is int"):
        BNVAE(**TINY).fit(["good food", 3, "bad", "cold"])
    with pytest.raises(ValueError, match="Found 1 non-empty texts to pretrain on; expected at least 4"):
        with pytest.warns(UserWarning, match="Skipped 2 empty"):
            BNVAE(**TINY).fit(["good food", "", " "])


def test_fits_from_a_text_file_and_a_dataset(corpus, tmp_path):
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
