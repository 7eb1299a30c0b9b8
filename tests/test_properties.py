"""Property-based: arbitrary unicode texts, lengths and label mixes reach the tokenizer
and the estimators (issue 17). Nothing raises but the documented ValueError and
TypeError, and predict gives one row per text sent. Models are fitted once per module
and the examples are few, so the file runs in seconds."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssl_textvae import BNVAE, BNVAEClassifier, TextTokenizer
from ssl_textvae.inputs import check_labels

from conftest import TINY

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
# any code point but surrogates (not encodable as UTF-8, so never in a real str from a file)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
TEXTS = st.lists(TEXT, min_size=1, max_size=12)


@pytest.fixture(scope="module")
def classifier():
    from conftest import make_corpus

    texts, labels = make_corpus(80, seed=5)
    return BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1))).fit(texts, labels)


@SETTINGS
@given(texts=TEXTS, kind=st.sampled_from(["word", "bpe"]), lowercase=st.booleans())
def test_tokenizer_encodes_any_unicode(texts, kind, lowercase):
    if not any(text.strip() for text in texts):
        texts = texts + ["a"]
    tokenizer = TextTokenizer(kind, lowercase=lowercase).fit(texts)
    encoded = tokenizer.encode_batch(texts)
    assert len(encoded) == len(texts)
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for ids in encoded for i in ids)


@SETTINGS
@given(texts=TEXTS)
def test_predict_returns_one_row_per_text(classifier, texts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # empty / unknown rows are counted
        predicted = classifier.predict(texts)
        proba = classifier.predict_proba(texts)
    assert predicted.shape == (len(texts),)
    assert proba.shape == (len(texts), 2) and np.isfinite(proba).all()
    assert set(predicted) <= set(classifier.classes_)


LABEL = st.one_of(st.integers(-1, 3), st.sampled_from(["-1", "a", "b"]), st.none(),
                  st.floats(allow_nan=True))


@SETTINGS
@given(labels=st.lists(LABEL, min_size=1, max_size=10))
def test_any_label_mix_is_read_or_refused(labels):
    try:
        y, unlabeled = check_labels(labels, len(labels))
    except ValueError as error:   # documented: floats, NaN, None, mixed int and str
        assert "expected" in str(error).lower()
        return
    assert y.dtype.kind in "iU" and len(y) == len(labels) == len(unlabeled)
    kinds = {isinstance(label, str) for label in labels}
    assert len(kinds) == 1   # never a silent mix


BASE_TEXTS, BASE_LABELS = ["good food", "rude staff", "great place", "cold food"], [1, 0, 1, 0]


@settings(max_examples=8, deadline=None, derandomize=True)
@given(texts=st.lists(TEXT, max_size=12), data=st.data())
def test_classifier_fit_on_any_texts_and_labels(texts, data):
    labels = data.draw(st.lists(st.sampled_from([-1, 0, 1, "-1", "x"]), min_size=len(texts),
                                max_size=len(texts)))
    if labels and isinstance(labels[0], str):   # one label type (mixes are tested above)
        texts, labels = BASE_TEXTS + texts, [str(v) for v in BASE_LABELS + labels]
    else:
        texts, labels = BASE_TEXTS + texts, [v if isinstance(v, int) else -1
                                             for v in BASE_LABELS + labels]
    tiny = dict(TINY, embed_dim=8, hidden_dim=8, latent_dim=2, max_epochs=1, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            model = BNVAEClassifier(vae=BNVAE(**tiny)).fit(texts, labels)
        except ValueError as error:   # documented: too few texts or classes, empty labeled rows
            assert "empty or whitespace only" in str(error), error   # an empty labeled row
            return
        assert model.predict(texts).shape == (len(texts),)
        assert model.predict(texts[4:] + [""]).shape == (len(texts) - 3,)
