"""One check and one tokenization per text per fit: the classifiers check their texts at the
entry point and read the labeled rows from the corpus the VAE was pretrained on."""

import sys
import warnings
from contextlib import ExitStack
from unittest import mock

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from ssl_textvae import BNVAE, BNVAEClassifier, ConcatTexts, FineTunedBNVAEClassifier
from ssl_textvae.text import inputs
from ssl_textvae.text.data import EncodedCorpus, rows_after_skipping
from ssl_textvae.text.inputs import TextList, check_texts, iterate_texts
from ssl_textvae.text.tokenization import TextTokenizer

from conftest import make_corpus, make_semi_labeled

SMALL = dict(embed_dim=8, hidden_dim=8, latent_dim=4, max_epochs=1, batch_size=16, random_state=0,
             verbose=0)
# A one-epoch model of 8 units: its KL may explode (the warning says so), which is not tested here.
pytestmark = pytest.mark.filterwarnings("ignore:The validation KL", "ignore:Skipped 2 empty")


class Counts:
    """Texts passed through ``check_text`` and through the VAE tokenizer's ``encode_batch``,
    wherever the package calls them from."""

    def __init__(self):
        self.checked = self.encoded = 0

    def __enter__(self):
        self.stack = ExitStack()
        original_check, original_encode = inputs.check_text, TextTokenizer.encode_batch

        def check_text(*args, **kwargs):
            self.checked += 1
            return original_check(*args, **kwargs)

        def encode_batch(tokenizer, texts):
            self.encoded += len(texts)
            return original_encode(tokenizer, texts)

        for name, module in list(sys.modules.items()):
            if name.startswith("ssl_textvae") and getattr(module, "check_text", None) is original_check:
                self.stack.enter_context(mock.patch.object(module, "check_text", check_text))
        self.stack.enter_context(mock.patch.object(TextTokenizer, "encode_batch", encode_batch))
        self.stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)


@pytest.fixture(scope="module")
def data():
    return make_semi_labeled(60, 30, seed=5)


def test_bnvae_fit_checks_and_tokenizes_each_text_once(data):
    texts, _ = data
    with Counts() as counts:
        BNVAE(**SMALL).fit(texts)
    assert (counts.checked, counts.encoded) == (len(texts), len(texts))


@pytest.mark.parametrize("classifier", [
    lambda: BNVAEClassifier(vae=BNVAE(**SMALL)),
    lambda: BNVAEClassifier(vae=BNVAE(**SMALL), word_weight=1.0),
    lambda: FineTunedBNVAEClassifier(vae=BNVAE(**SMALL), fine_tuning_max_epochs=1, verbose=0,
                                     random_state=0),
], ids=["head", "head-and-words", "fine-tuned"])
@pytest.mark.parametrize("n_unlabeled", [0, 12])
def test_a_classifier_fit_checks_and_tokenizes_each_text_once(data, classifier, n_unlabeled):
    texts, y = data
    pool = make_corpus(n_unlabeled, seed=9)[0] if n_unlabeled else None
    with Counts() as counts:
        classifier().fit(texts, y, unlabeled=pool)
    n_texts = len(texts) + n_unlabeled
    assert (counts.checked, counts.encoded) == (n_texts, n_texts)


def test_a_frozen_vae_encodes_only_the_labeled_texts_once(data):
    texts, y = data
    vae = BNVAE(**SMALL).fit(texts)
    with Counts() as counts:
        BNVAEClassifier(vae=FrozenEstimator(vae)).fit(texts, y)
    assert (counts.checked, counts.encoded) == (len(texts), int((y != -1).sum()))


def test_the_handed_over_rows_are_what_encode_gives(data):
    texts, _ = data
    texts = TextList(texts[:10] + ["", "  "] + texts[10:20])   # empty rows skipped in pretraining
    rows = [0, 9, 12, 21]
    vae = BNVAE(**SMALL)
    kept = vae._fit(ConcatTexts(texts, iterate_texts(["good food"] * 4)),
                    keep=rows_after_skipping(texts, rows))
    encoded = vae.encode([texts[i] for i in rows])
    np.testing.assert_array_equal(kept.ids, encoded.ids)
    np.testing.assert_array_equal(kept.offsets, encoded.offsets)
    np.testing.assert_array_equal(rows_after_skipping(texts, rows), [0, 9, 10, 19])


def test_the_head_is_fitted_on_the_means_transform_gives(data):
    texts, y = data
    clf = BNVAEClassifier(vae=BNVAE(**SMALL)).fit(texts, y)
    labeled = [text for text, label in zip(texts, y) if label != -1]
    head = LogisticRegression(max_iter=1000).fit(clf.vae_.transform(labeled), y[y != -1])
    np.testing.assert_array_equal(head.coef_, clf.estimator_.coef_)


def test_a_stream_is_checked_on_its_first_complete_pass_only():
    texts = ["good food", "rude staff"]
    with Counts() as counts:
        stream = iterate_texts(texts)
        assert list(stream) == list(stream) == texts
    assert counts.checked == 2
    with pytest.raises(TypeError, match="item 1 is int"):
        list(iterate_texts(["good food", 3]))


def test_checked_texts_are_not_checked_again():
    with Counts() as counts:
        texts = check_texts(["good food", "", "rude staff"], allow_empty=True)
        assert check_texts(texts, allow_empty=True) is texts
        assert iterate_texts(texts) is texts
        assert iterate_texts(ConcatTexts(texts, iterate_texts(["cold food"]))).sources[0] is texts
        EncodedCorpus.from_texts(TextTokenizer().fit(["good food"]), texts, empty_as_unknown=True)
    assert counts.checked == 3
    with pytest.raises(ValueError, match="Item 1 of X is empty"):   # the emptiness rule still holds
        check_texts(texts)
