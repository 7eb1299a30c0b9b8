"""The optional adaptive softmax of the decoder (``softmax="adaptive"``)."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, make_corpus, text_vae
from ssl_textvae import BNVAE, BNVAEClassifier
from ssl_textvae.nn.model import adaptive_cutoffs
from ssl_textvae.text.tokenization import BOS_ID, EOS_ID, PAD_ID

VOCAB, LATENT = 20, 4


def make_module(**kwargs):
    torch.manual_seed(0)
    return text_vae(VOCAB, embed_dim=8, hidden_dim=16, latent_dim=LATENT, softmax="adaptive",
                    **kwargs).eval()


def make_batch():
    tokens = torch.tensor([[BOS_ID, 5, 16, 7, EOS_ID, PAD_ID],
                           [BOS_ID, 8, 19, 10, 11, EOS_ID]])
    return tokens, torch.tensor([5, 6])


def test_cutoffs_put_frequent_ids_in_the_head():
    assert adaptive_cutoffs(9382) == [1000, 4000]
    assert adaptive_cutoffs(VOCAB) == [5, 10]
    assert adaptive_cutoffs(3) == [1]
    with pytest.raises(ValueError, match="at least 3 tokens"):
        adaptive_cutoffs(2)


def test_next_token_distribution_is_normalized_and_matches_torch():
    decoder = make_module().decoder
    assert isinstance(decoder.output, nn.AdaptiveLogSoftmaxWithLoss)
    hidden = torch.randn(7, 16)
    scores = decoder.next_token_scores(hidden)
    assert scores.shape == (7, VOCAB) and scores.dtype == torch.float32
    torch.testing.assert_close(torch.logsumexp(scores, -1), torch.zeros(7), atol=1e-5, rtol=0)
    torch.testing.assert_close(scores, decoder.output.log_prob(hidden))
    targets = torch.tensor([0, 3, 4, 5, 9, 10, 19])                 # head, both clusters, edges
    torch.testing.assert_close(decoder._token_nll(hidden, targets),
                               -decoder.output(hidden, targets).output)


def test_reconstruction_is_minus_the_log_probability_of_each_next_token():
    module = make_module()
    tokens, lengths = make_batch()
    z = torch.randn(2, 1, LATENT)
    nll = module.decoder.reconstruction_nll(tokens, lengths, z)               # (2, 1)
    hidden, _ = module.decoder.hidden_states(tokens[:, :-1], z[:, 0])
    log_probs = module.decoder.next_token_scores(hidden.reshape(-1, 16)).view(2, -1, VOCAB)
    targets = tokens[:, 1:]
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * (targets != PAD_ID)
    torch.testing.assert_close(nll[:, 0], -picked.sum(1))


@pytest.mark.bf16
def test_bf16_autocast_keeps_the_nll_in_fp32():
    module = make_module()
    tokens, lengths = make_batch()
    z = torch.randn(2, 1, LATENT)
    exact = module.decoder.reconstruction_nll(tokens, lengths, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = module.decoder.reconstruction_nll(tokens, lengths, z)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=0.02, atol=0.05)


def test_unknown_softmax_is_refused():
    with pytest.raises(ValueError, match="softmax must be one of"):
        text_vae(VOCAB, softmax="sampled")
    with pytest.raises(ValueError, match="'softmax' parameter"):
        BNVAE(softmax="sampled").fit(["a b", "c d", "e f", "g h"])


def test_bnvae_trains_samples_and_round_trips(tmp_path):
    texts, _ = make_corpus(200)
    vae = BNVAE(**dict(TINY, max_epochs=3), softmax="adaptive").fit(texts)
    assert isinstance(vae.module_.decoder.output, nn.AdaptiveLogSoftmaxWithLoss)
    losses = [record["train_loss"] for record in vae.history_]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(isinstance(text, str) for text in vae.sample(3, random_state=0))
    report = vae.evaluate(texts[:30], n_importance_samples=5, verbose=0)
    assert np.isfinite(report["iw_nll"]) and report["perplexity"] > 1
    vae.save(tmp_path)
    loaded = BNVAE.load(tmp_path)
    assert loaded.softmax == "adaptive"
    np.testing.assert_array_equal(loaded.transform(texts[:20]), vae.transform(texts[:20]))
    restored = pickle_round_trip(vae)
    np.testing.assert_array_equal(restored.transform(texts[:20]), vae.transform(texts[:20]))


def test_classifier_on_an_adaptive_softmax_vae(corpus, semi_labels):
    classifier = BNVAEClassifier(vae=BNVAE(**dict(TINY, max_epochs=1), softmax="adaptive"))
    classifier.fit(corpus[0][:200], semi_labels[:200])
    assert isinstance(classifier.vae_.module_.decoder.output, nn.AdaptiveLogSoftmaxWithLoss)
    assert set(classifier.predict(corpus[0][:10])) <= set(classifier.classes_)


def pickle_round_trip(estimator):
    import pickle

    return pickle.loads(pickle.dumps(estimator))
