"""A tiny synthetic corpus: sentences of filler words plus two sentiment words,
so a latent code can learn the label and a collapsed one cannot."""

import os

import warnings

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# No matrix-multiply probe (ssl_textvae.runtime.matmul): every fit takes the path its precision
# gives, as before the probe, so that runs in separate processes stay bit for bit the same
# (kill and resume, distributed against one process). tests/test_matmul_path.py tests the probe.
os.environ.setdefault("SSL_TEXTVAE_MATMUL_PATH", "off")
# The tiny models gain nothing from intra-op threads, and on a busy 2-core machine
# OpenMP threads waiting on each other made a 2-second fit take over 30 seconds.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Skip ``bf16`` tests where this CPU cannot run an LSTM under bf16 autocast (oneDNN
    has no bf16 LSTM without AVX-512): there the package refuses precision='bf16'."""
    from ssl_textvae.runtime.devices import cpu_runs_bf16_lstm

    if cpu_runs_bf16_lstm():
        return
    skip = pytest.mark.skip(reason="this CPU has no bf16 LSTM kernels (oneDNN needs AVX-512)")
    for item in items:
        if "bf16" in item.keywords:
            item.add_marker(skip)

POSITIVE = ["good", "great", "tasty", "friendly", "love"]
NEGATIVE = ["bad", "rude", "cold", "awful", "hate"]
FILLER = ["the", "food", "service", "was", "really", "place", "staff", "and"]

TINY = dict(embed_dim=32, hidden_dim=64, latent_dim=8, max_epochs=3, batch_size=16, random_state=0, verbose=0)


def text_vae(vocab_size, max_chunk_logits=None, **params):
    """The TextVAE that a BNVAE of ``params`` builds (its defaults for the others)."""
    from ssl_textvae.estimators.bnvae import module_kwargs
    from ssl_textvae import BNVAE
    from ssl_textvae.nn.model import TextVAE

    return TextVAE(**module_kwargs(BNVAE(**params), vocab_size), max_chunk_logits=max_chunk_logits)


def make_corpus(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, 4)) + list(rng.choice(POSITIVE if label else NEGATIVE, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, labels


def make_semi_labeled(n, n_labeled, seed=0):
    """``make_corpus(n, seed)`` with the labels of all but the first ``n_labeled`` texts -1."""
    texts, labels = make_corpus(n, seed=seed)
    y = labels.copy()
    y[n_labeled:] = -1
    return texts, y


@pytest.fixture(scope="session")
def corpus():
    return make_corpus(600)


@pytest.fixture(scope="session")
def held_out():
    """Texts and labels no model was fitted on."""
    return make_corpus(200, seed=7)


@pytest.fixture(scope="session")
def labeled():
    """A small fully labeled set."""
    return make_corpus(90, seed=11)


def check_classifier_outputs(model, texts, n_classes=2):
    """predict_proba rows sum to 1, predict is their argmax, decision_function has the shape
    scikit-learn gives it."""
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (len(texts), n_classes)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(texts), model.classes_[probabilities.argmax(1)])
    shape = (len(texts),) if n_classes == 2 else (len(texts), n_classes)
    assert model.decision_function(texts).shape == shape


@pytest.fixture(scope="session")
def semi_labels(corpus):
    """The labels with all but 40 rows marked unlabeled (-1)."""
    y = corpus[1].copy()
    y[40:] = -1
    return y


@pytest.fixture(scope="session")
def fitted_classifier(corpus, semi_labels):
    from ssl_textvae import BNVAE, BNVAEClassifier

    return BNVAEClassifier(vae=BNVAE(**TINY)).fit(corpus[0], semi_labels)


@pytest.fixture(scope="session")
def trained_vae(corpus):
    """A tiny BN-VAE trained a little longer, shared by the metrics and generation tests."""
    from ssl_textvae import BNVAE

    return BNVAE(**dict(TINY, max_epochs=6)).fit(corpus[0])


@pytest.fixture(scope="session")
def fitted_vae(fitted_classifier):
    """A pretrained BNVAE (the one inside ``fitted_classifier``), for
    ``vae=FrozenEstimator(fitted_vae)`` tests."""
    return fitted_classifier.vae_


@pytest.fixture
def count_pretraining(monkeypatch):
    """A list that grows by one each time a BNVAE is pretrained (``training.pretrain``
    is still called)."""
    from ssl_textvae.estimators import bnvae

    calls = []
    original = bnvae.pretrain

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(bnvae, "pretrain", counting)
    return calls


def write_tiny_bert(path, words):
    """A 1-layer BERT of width 16 (random weights, seed 0) and its WordPiece tokenizer over
    ``words`` in directory ``path`` (a pathlib.Path): a pretrained encoder for tests, with no
    download. Returns the directory as a str."""
    import transformers

    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(words)))
    transformers.BertTokenizerFast(str(path / "vocab.txt")).save_pretrained(str(path))
    config = transformers.BertConfig(vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.set_seed(0)
        transformers.BertModel(config).save_pretrained(str(path))
    return str(path)
