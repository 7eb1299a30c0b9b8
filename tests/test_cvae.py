"""BN-CVAE: the KL terms on cases with a known answer, the batch-norm bound, the
metrics, generation, persistence, reproducibility and input checks, on tiny
synthetic dialogues (a question, then one of a few answers that fit it)."""

import math
import pickle

import numpy as np
import pytest

import ssl_textvae
import torch
from torch.distributions import Normal, kl_divergence

from ssl_textvae import BNCVAE
from ssl_textvae.dialogue.bncvae import module_kwargs
from ssl_textvae.dialogue.cvae import ConditionalVAE, gaussian_kl_between, total_kl, training_loss
from ssl_textvae.dialogue import dialogue_pairs
from ssl_textvae.dialogue.metrics import (WordVectors, bow_embedding, distinct_n, fit_word_vectors,
                                          response_metrics, sentence_bleu)
from ssl_textvae.dialogue.training import DialogueCorpus
from ssl_textvae.nn.model import gaussian_kl

TOPICS = {"what color do you like ?": ["i like red .", "blue is nice .", "green , i think ."],
          "where do you live ?": ["in the city .", "near the sea .", "i live in town ."],
          "how are you today ?": ["fine , thanks .", "not bad .", "very well , and you ?"]}
TINY = dict(embed_dim=16, utterance_dim=16, context_dim=16, decoder_dim=16, latent_dim=4, batch_size=16,
            max_epochs=2, random_state=0, verbose=0)
SIZES = dict(embed_dim=16, utterance_dim=16, context_dim=16, decoder_dim=16, latent_dim=6)


def make_dialogues(n, seed=0):
    rng = np.random.default_rng(seed)
    questions = list(TOPICS)
    dialogues = []
    for _ in range(n):
        question = questions[rng.integers(len(questions))]
        answers = TOPICS[question]
        dialogues.append(["hello .", "hi there .", question, answers[rng.integers(len(answers))]])
    return dialogues


@pytest.fixture(scope="module")
def pairs():
    return dialogue_pairs(make_dialogues(60), max_context=3)


@pytest.fixture(scope="module")
def fitted(pairs):
    return BNCVAE(gamma=0.5, bow=True, **TINY).fit(*pairs)


def _random_gaussians(seed, shape=(5, 3)):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(4)]


# -- loss terms -----------------------------------------------------------------------
def test_kl_of_identical_gaussians_is_zero():
    mean, logvar = _random_gaussians(0)[:2]
    assert torch.allclose(gaussian_kl_between(mean, logvar, mean, logvar), torch.zeros_like(mean), atol=1e-6)


def test_kl_between_matches_torch_and_standard_normal_closed_form():
    mean_q, logvar_q, mean_p, logvar_p = _random_gaussians(1)
    expected = kl_divergence(Normal(mean_q, (0.5 * logvar_q).exp()), Normal(mean_p, (0.5 * logvar_p).exp()))
    assert torch.allclose(gaussian_kl_between(mean_q, logvar_q, mean_p, logvar_p), expected, atol=1e-5)
    zeros = torch.zeros_like(mean_q)
    assert torch.allclose(gaussian_kl_between(mean_q, logvar_q, zeros, zeros), gaussian_kl(mean_q, logvar_q),
                          atol=1e-6)
    # KL(N(1, 1) || N(0, 1)) = 1/2 in each dimension
    assert torch.allclose(gaussian_kl(torch.ones(2, 3), torch.zeros(2, 3)), torch.full((2, 3), 0.5))


def test_bn_cvae_total_kl_is_kl_to_prior_plus_prior_to_standard_normal():
    mean_q, logvar_q, mean_p, logvar_p = _random_gaussians(2)
    q = Normal(mean_q, (0.5 * logvar_q).exp())
    p = Normal(mean_p, (0.5 * logvar_p).exp())
    direct = kl_divergence(q, p) + kl_divergence(p, Normal(torch.zeros_like(mean_p), torch.ones_like(mean_p)))
    assert torch.allclose(total_kl(mean_q, logvar_q, mean_p, logvar_p), direct, atol=1e-5)
    zeros = torch.zeros(2, 3)
    assert torch.allclose(total_kl(zeros, zeros, zeros, zeros), zeros)  # vanishes only at N(0, I)
    assert (total_kl(zeros + 0.1, zeros, zeros, zeros) > 0).all()


def test_training_loss_adds_prior_kl_only_for_bn_cvae():
    terms = {"reconstruction": torch.tensor([10.0, 20.0]), "kl": torch.tensor([1.0, 3.0]),
             "prior_kl": torch.tensor([0.5, 0.5]), "bow": torch.tensor([2.0, 4.0])}
    assert training_loss(terms).item() == pytest.approx(20.0)            # (13 + 27) / 2
    assert training_loss(terms, kl_weight=0.5).item() == pytest.approx(19.0)
    assert training_loss(terms, prior_penalty=True).item() == pytest.approx(20.5)


def _batch(pairs, model_or_tokenizer):
    corpus = DialogueCorpus.from_texts(model_or_tokenizer, *pairs)
    return corpus.batch(np.arange(len(corpus)), "cpu")


def test_batch_norm_keeps_the_kl_to_standard_normal_above_its_bound_on_a_batch(fitted, pairs):
    torch.manual_seed(0)
    module = ConditionalVAE(**module_kwargs(BNCVAE(gamma=0.8, **SIZES), fitted.tokenizer_.vocab_size))
    module.train()
    with torch.no_grad():
        module.mean_norm.norm.bias.normal_()  # any learned shift only adds to the KL
        terms = module(*_batch(pairs, fitted.tokenizer_))
    bound = 6 * 0.8 ** 2 / 2
    assert terms["posterior_kl"].mean().item() >= bound
    # the same network without the batch norm starts collapsed: its means are near 0
    torch.manual_seed(0)
    plain = ConditionalVAE(**module_kwargs(BNCVAE(gamma=0, **SIZES), fitted.tokenizer_.vocab_size))
    with torch.no_grad():
        assert plain(*_batch(pairs, fitted.tokenizer_))["posterior_kl"].mean().item() < bound


def test_batches_mark_floors_and_context_sizes(fitted):
    corpus = DialogueCorpus.from_texts(fitted.tokenizer_, [["a", "b", "c"], ["d"]], ["e", "f"])
    utterances, lengths, floors, sizes, response, response_lengths = corpus.batch([1, 0], "cpu")
    assert sizes.tolist() == [1, 3] and floors.tolist() == [1, 1, 0, 1]
    assert utterances.shape == (4, 3) and response.shape == (2, 3) and lengths.tolist() == [3] * 4


# -- metrics --------------------------------------------------------------------------
def test_sentence_bleu_known_values():
    reference = "the cat sat on the mat".split()
    assert sentence_bleu(reference, reference) == pytest.approx(1.0)
    assert sentence_bleu(reference, "dogs bark loudly".split()) == 0.0
    # every n-gram of "the cat sat" matches; the brevity penalty is exp(1 - 6 / 3)
    for n in (1, 2, 3):
        assert sentence_bleu(reference, "the cat sat".split(), n) == pytest.approx(math.exp(-1))
    # a 3-word hypothesis has no 4-gram: as in nltk, its precision is (0 + 1) / (1 + 1)
    assert sentence_bleu(reference, "the cat sat".split(), 4) == pytest.approx(math.exp(-1) * 0.5 ** 0.25)
    # unigram precision 2/4, bigram (0 + 1) / (3 + 1) with add-one smoothing
    assert sentence_bleu("a b c d".split(), "a x c y".split(), 2) == pytest.approx(math.sqrt(0.5 * 0.25))


def test_precision_recall_distinct_and_bow_embeddings():
    result = response_metrics([["a b", "c d"]], [["a b"]])
    assert result["bleu1_precision"] == pytest.approx(0.5) and result["bleu1_recall"] == pytest.approx(1.0)
    assert distinct_n([["a", "a", "b"]], 1) == pytest.approx(2 / 3)
    assert distinct_n([["a", "a", "b"], ["a", "a"]], 2) == pytest.approx(2 / 3)
    vectors = WordVectors({"x": 0, "y": 1}, np.array([[1.0, -3.0], [2.0, 1.0]]))
    assert bow_embedding(["x", "y", "zz"], vectors, "average") == pytest.approx([1.5, -1.0])
    assert bow_embedding(["x", "y"], vectors, "extrema") == pytest.approx([2.0, -3.0])
    assert bow_embedding(["zz"], vectors) is None
    scored = response_metrics([["x y"]], [["x y"]], vectors)
    assert scored["a_bow_precision"] == pytest.approx(1.0) and scored["e_bow_recall"] == pytest.approx(1.0)


def test_word_vectors_are_unit_rows_and_put_interchangeable_words_together():
    texts = ["i like red cars", "i like blue cars", "we eat hot soup", "we eat cold soup"] * 20
    vectors = fit_word_vectors(texts, dim=4, window=2, min_count=1)
    assert np.allclose(np.linalg.norm(vectors.vectors, axis=1), 1.0, atol=1e-5)
    red, blue, hot = (vectors.lookup([w])[0] for w in ("red", "blue", "hot"))
    assert red @ blue > red @ hot


# -- the estimator ----------------------------------------------------------------------
def test_fit_records_history_and_builds_the_variant(fitted, pairs):
    assert len(fitted.history_) == 2 and {"valid_kl", "valid_posterior_kl", "train_bow"} <= set(fitted.history_[0])
    assert fitted.module_.bow_head is not None and hasattr(fitted.module_.mean_norm, "norm")
    plain = BNCVAE(gamma=0, **dict(TINY, max_epochs=1)).fit(*pairs)
    assert plain.module_.bow_head is None and isinstance(plain.module_.mean_norm, torch.nn.Identity)
    assert plain.history_[0]["train_bow"] == 0.0


def test_generate_returns_n_samples_strings_per_context(fitted, pairs):
    out = fitted.generate(pairs[0][:3], n_samples=4, random_state=0)
    assert len(out) == 3 and all(len(samples) == 4 and all(isinstance(s, str) for s in samples)
                                 for samples in out)
    sampled = fitted.generate(pairs[0][:3], n_samples=2, temperature=1.0, max_tokens=5, random_state=0)
    assert all(len(s.split()) <= 5 for samples in sampled for s in samples)


def test_evaluate_reports_terms_bound_and_response_metrics(fitted, pairs):
    contexts, responses = pairs
    result = fitted.evaluate(contexts[:10], responses[:10], n_samples=2)
    assert result["kl_bound"] == pytest.approx(4 * 0.5 ** 2 / 2)
    assert result["bound_holds"] == (result["posterior_kl"] >= result["kl_bound"])
    assert result["loss"] == pytest.approx(result["reconstruction"] + result["kl"])
    assert 1 < result["perplexity"] <= result["elbo_perplexity"]
    assert 0 <= result["bleu4_precision"] <= result["bleu4_recall"] <= 1 and 0 < result["distinct1"] <= 1
    multi = fitted.evaluate(contexts[:2], [[responses[0], "fine ."], responses[1]], n_samples=1)
    assert multi["bleu1_recall"] >= 0


def test_save_load_round_trip_gives_the_same_outputs(fitted, pairs, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = BNCVAE.load(tmp_path / "model")
    assert loaded.get_params() == fitted.get_params() and loaded.history_ == fitted.history_
    assert isinstance(ssl_textvae.load(tmp_path / "model"), BNCVAE)   # the one loader dispatches to it
    contexts, responses = pairs
    assert loaded.generate(contexts[:4], 3, random_state=1) == fitted.generate(contexts[:4], 3, random_state=1)
    assert loaded.evaluate(contexts[:8], responses[:8], n_samples=0) == fitted.evaluate(
        contexts[:8], responses[:8], n_samples=0)
    (tmp_path / "model" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="Could not read the weights"):
        BNCVAE.load(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="config.json"):
        BNCVAE.load(tmp_path / "nothing")


def test_pickle_round_trip(fitted, pairs):
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.generate(pairs[0][:3], 2, random_state=0) == fitted.generate(pairs[0][:3], 2, random_state=0)


def test_seeded_fits_are_reproducible_and_leave_the_global_rng_alone(pairs):
    state = torch.get_rng_state()
    first = BNCVAE(gamma=0.5, **dict(TINY, max_epochs=1)).fit(*pairs)
    assert torch.equal(torch.get_rng_state(), state)
    second = BNCVAE(gamma=0.5, **dict(TINY, max_epochs=1)).fit(*pairs)
    assert first.history_[0]["valid_loss"] == second.history_[0]["valid_loss"]
    assert first.generate(pairs[0][:3], 2, random_state=0) == second.generate(pairs[0][:3], 2, random_state=0)


def test_checkpoint_resumes_to_the_same_result(pairs, tmp_path):
    full = BNCVAE(**TINY).fit(*pairs)
    BNCVAE(checkpoint_dir=str(tmp_path), **dict(TINY, max_epochs=1)).fit(*pairs)
    resumed = BNCVAE(checkpoint_dir=str(tmp_path), **TINY).fit(*pairs)
    assert [h["valid_loss"] for h in resumed.history_] == [h["valid_loss"] for h in full.history_]
    with pytest.raises(ValueError, match="another model"):
        BNCVAE(checkpoint_dir=str(tmp_path), **dict(TINY, gamma=0.9)).fit(*pairs)


def test_dialogue_pairs():
    contexts, responses = dialogue_pairs([["a", "b", "c", "d"], ["e"]], max_context=2)
    assert contexts == [["a"], ["a", "b"], ["b", "c"]] and responses == ["b", "c", "d"]


@pytest.mark.parametrize("contexts, responses, error, match", [
    ("hello", ["hi"], TypeError, "list of contexts"),
    (["hello"], ["hi"], TypeError, "wrap it in a list"),
    ([[]], ["hi"], ValueError, "non-empty list"),
    ([["hello", "  "]], ["hi"], ValueError, "empty or whitespace-only utterance"),
    ([["hello", 3]], ["hi"], TypeError, "to be a str, got int"),
    ([["hello"], ["hey"]], ["hi"], ValueError, "inconsistent numbers"),
    ([["hello"]], [None], TypeError, "response 0"),
])
def test_bad_input_is_refused_with_a_clear_error(contexts, responses, error, match):
    with pytest.raises(error, match=match):
        BNCVAE(**TINY).fit(contexts, responses)


def test_bad_parameters_and_arguments(fitted, pairs):
    with pytest.raises(ValueError, match="'gamma' parameter of BNCVAE must be a float"):
        BNCVAE(gamma=-1).fit(*pairs)
    with pytest.raises(ValueError, match="'bow' parameter of BNCVAE must be a bool"):
        BNCVAE(bow="yes").fit(*pairs)
    with pytest.raises(ValueError, match="at least 6"):
        BNCVAE(**TINY).fit([["a"]] * 3, ["b"] * 3)
    with pytest.raises(TypeError, match="validation_data"):
        BNCVAE(**TINY).fit(*pairs, validation_data=pairs[0])
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        fitted.generate(pairs[0][:1], n_samples=0)
    with pytest.raises(ValueError, match="temperature must be"):
        fitted.generate(pairs[0][:1], temperature=-1.0)
    with pytest.raises(Exception, match="not fitted"):
        BNCVAE().generate(pairs[0][:1])


def test_recipe_runs_end_to_end_and_drops_duplicated_dialogues(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "recipes" / "dailydialog_bncvae.py"
    spec = importlib.util.spec_from_file_location("recipe_dailydialog", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    lines = [" __eou__ ".join([f"hello {i} ."] + d[1:]) + " __eou__" for i, d in enumerate(make_dialogues(80))]
    lines[65], lines[75], lines[76] = lines[0], lines[1], lines[2]  # repeats of training dialogues
    data = tmp_path / "data"
    data.mkdir()
    (data / "dialogues_train.txt").write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
    (data / "dialogues_validation.txt").write_text("\n".join(lines[60:70]) + "\n", encoding="utf-8")
    (data / "dialogues_test.txt").write_text("\n".join(lines[70:] + ["x __eou__ y __eou__"]) + "\n",
                                             encoding="utf-8")
    out = tmp_path / "out"
    recipe.main(["--data-dir", str(data), "--out-dir", str(out), "--max-epochs", "1", "--latent-dim", "2",
                 "--embed-dim", "8", "--utterance-dim", "8", "--context-dim", "8", "--decoder-dim", "8",
                 "--test-contexts", "4", "--n-samples", "2", "--verbose", "0"])
    record = json.loads((out / "results.json").read_text())
    assert record["dropped_duplicates"] == {"validation": 1, "test": 2}
    assert record["pairs"]["all_test"] == 3 * 8 + 1 and record["pairs"]["all_validation"] == 3 * 9
    assert set(record["results"]) == {"CVAE", "CVAE (BOW)", "BN-CVAE"}
    assert record["command"].startswith("python recipes/dailydialog_bncvae.py --data-dir")
    assert "| KL(q‖p) |" in (out / "results.md").read_text()
    assert (out / "kl_per_epoch.png").stat().st_size > 0 and "Reference:" in (out / "samples.md").read_text()


def test_fit_leaves_numpy_parameters_as_given(pairs):
    """scikit-learn's contract: fit reads numpy scalars (a grid's values) without
    rewriting them; the module and a pickle still get Python numbers."""
    model = BNCVAE(gamma=np.float64(0.5), **dict(TINY, max_epochs=1, latent_dim=np.int64(4)))
    before = {name: (type(value), value) for name, value in model.get_params().items()}
    model.fit(*pairs)
    assert {name: (type(value), value) for name, value in model.get_params().items()} == before
    restored = pickle.loads(pickle.dumps(model))
    assert restored.generate(pairs[0][:2], 1, random_state=0) == model.generate(pairs[0][:2], 1, random_state=0)
