"""ssl_textvae.presets: settings picked from the shape of the pretraining texts."""

import pytest

from conftest import make_corpus
from ssl_textvae import BNVAE
from ssl_textvae.presets import (auto_vae, data_dependent_params, describe_texts,
                                 small_pool_search_space, texts_for_minutes)

RAW = ["Please call me back, I'm at home.", "Free entry!! Text WIN to 8000.", "ok see you (later)"] * 20
TOKENIZED = ["the company 's sales rose 5 % .", "profit fell , the board said ."] * 30


def test_describe_texts_tells_raw_from_pre_tokenized_text():
    raw, tokenized = describe_texts(RAW), describe_texts(TOKENIZED)
    assert not raw["pretokenized"] and raw["glued_punctuation"] > 0.2
    assert tokenized["pretokenized"] and tokenized["glued_punctuation"] == 0
    assert tokenized["n_texts"] == 60 and tokenized["n_tokens"] == 30 * 8 + 30 * 7
    assert tokenized["mean_tokens"] == 7.5


def test_describe_texts_skips_empty_texts_and_rejects_bad_input():
    assert describe_texts(["a b", "  ", "c"])["n_texts"] == 2
    with pytest.raises(ValueError, match="no non-empty text"):
        describe_texts(["", " "])
    with pytest.raises(ValueError, match="sample_size must be an int >= 1"):
        describe_texts(["a"], sample_size=0)


def pool(n_texts, n_tokens, pretokenized=True, p95=20.0):
    return {"n_texts": n_texts, "n_tokens": n_tokens, "p95_tokens": p95, "pretokenized": pretokenized}


def test_small_pools_get_a_small_model_and_more_epochs():
    small = data_dependent_params(pool(4_000, 70_000))
    assert (small["embed_dim"], small["hidden_dim"], small["max_epochs"]) == (64, 128, 15)
    medium = data_dependent_params(pool(50_000, 500_000))
    assert (medium["embed_dim"], medium["hidden_dim"], medium["max_epochs"]) == (128, 256, 3)
    large = data_dependent_params(pool(175_000, 1_600_000))
    assert (large["embed_dim"], large["hidden_dim"], large["max_epochs"]) == (128, 512, 3)
    assert data_dependent_params(pool(100, 1_000))["max_epochs"] == 20


def test_raw_text_gets_bpe_and_tokenized_text_words():
    raw = data_dependent_params(pool(10_000, 120_000, pretokenized=False))
    assert raw["tokenizer"] == "bpe" and raw["max_vocab_size"] == 4_800
    assert data_dependent_params(pool(100, 1_000, pretokenized=False))["max_vocab_size"] == 2_000
    words = data_dependent_params(pool(10_000, 120_000))
    assert words["tokenizer"] == "word" and words["min_frequency"] == 2
    assert "max_length" not in words
    assert data_dependent_params(pool(1_000, 80_000, p95=300))["max_length"] == 64


def test_data_dependent_params_rejects_an_incomplete_description():
    with pytest.raises(ValueError, match="description lacks"):
        data_dependent_params({"n_texts": 10})
    with pytest.raises(ValueError, match="at least one text"):
        data_dependent_params(pool(0, 0))


def test_auto_vae_shows_its_choices_in_get_params_and_lets_the_user_win():
    texts, _ = make_corpus(200)
    vae = auto_vae(texts, hidden_dim=16, embed_dim=8, latent_dim=4, max_epochs=1, random_state=0,
                   verbose=0)
    params = vae.get_params()
    assert isinstance(vae, BNVAE)
    assert params["hidden_dim"] == 16 and params["tokenizer"] == "word" and params["min_frequency"] == 2
    vae.fit(texts)
    assert vae.transform(texts[:3]).shape == (3, 4)
    assert vae.get_params() == params
    with pytest.raises(ValueError, match="Unknown BNVAE parameters"):
        auto_vae(texts, hiden_dim=3)


def test_small_pool_search_space_names_classifier_parameters():
    pytest.importorskip("optuna")
    space = small_pool_search_space()
    assert {"vae__gamma", "vae__latent_dim", "vae__hidden_dim", "vae__dropout_in", "estimator__C",
            "word_weight"} == set(space)
    assert 0.0 in space["word_weight"].choices      # the paper's head stays a point of the space
    assert "estimator__C" not in small_pool_search_space(head=False)
    assert "word_weight" not in small_pool_search_space(words=False)
    from ssl_textvae.tuning.objective import _check_search_space
    assert _check_search_space(space).keys() == space.keys()   # every name is one tune accepts


def test_texts_for_minutes_sizes_the_pool_from_a_measured_rate(monkeypatch):
    import ssl_textvae.presets as presets

    texts, _ = make_corpus(400, seed=0)
    vae = BNVAE(latent_dim=4, embed_dim=8, hidden_dim=8, max_epochs=2, verbose=0, random_state=0)

    class Probe:   # a fit measured at 0.09 s of training for 90 training texts
        def __init__(self, seconds):
            self.history_ = [{"seconds": seconds, "tokens_per_second": 1000.0}]

    fits = []
    monkeypatch.setattr(presets, "clone", lambda estimator: estimator)
    monkeypatch.setattr(BNVAE, "fit", lambda self, X: fits.append((list(X), self.max_epochs)) or Probe(0.09))
    n_texts, rate = texts_for_minutes(vae, texts, minutes=0.006, probe_size=100)
    # 1 ms a training text; 0.36 s over 2 epochs of 90% of the texts, 1.1 x for validation
    assert fits == [(texts[:100], 1)] and rate == 1000.0
    assert n_texts == int(0.36 / (1.1 * 2 * 0.9 * 0.001)) == 181
    assert texts_for_minutes(vae, texts, minutes=10, probe_size=100)[0] == 400       # all of them
    assert texts_for_minutes(vae, texts, minutes=1e-6, probe_size=100)[0] == 100     # the probe's


def test_texts_for_minutes_runs_a_real_probe_and_rejects_bad_budgets():
    texts, _ = make_corpus(120, seed=0)
    vae = BNVAE(latent_dim=4, embed_dim=8, hidden_dim=8, max_epochs=3, verbose=0, random_state=0)
    n_texts, rate = texts_for_minutes(vae, iter_texts(texts), minutes=1.0, probe_size=40)
    assert 40 <= n_texts <= 120 and rate > 0
    assert vae.max_epochs == 3 and not hasattr(vae, "history_")   # the probe fitted a clone
    with pytest.raises(ValueError, match="minutes must be > 0"):
        texts_for_minutes(vae, texts, minutes=0)
    with pytest.raises(ValueError, match="probe_size must be an int >= 20"):
        texts_for_minutes(vae, texts, minutes=1, probe_size=5)


class iter_texts:
    """A re-iterable without len(), as a streamed file."""
    def __init__(self, texts):
        self.texts = texts

    def __iter__(self):
        return iter(self.texts)


def test_native_precision_is_what_auto_trains_in():
    from ssl_textvae.presets import native_precision
    from ssl_textvae.runtime.devices import resolve_device, resolve_precision

    assert native_precision("cpu") == resolve_precision(resolve_device("cpu"), "auto")
    assert native_precision("cpu") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="device"):
        native_precision("no-such-device")
