"""Generation: prior samples, reconstructions and interpolations are strings of known words."""

import pytest
import torch

from ssl_textvae.nn.generation import decode_latents, interpolation_path


def _vocabulary(vae):
    return set(vae.tokenizer_.decode(range(4, vae.tokenizer_.vocab_size)).split())


def test_sample_returns_strings_of_known_words(trained_vae):
    texts = trained_vae.sample(6, random_state=0)
    assert len(texts) == 6 and all(isinstance(text, str) for text in texts)
    vocabulary = _vocabulary(trained_vae) | {"<unk>"}
    assert all(set(text.split()) <= vocabulary for text in texts)


def test_greedy_decoding_is_deterministic(corpus, trained_vae):
    assert trained_vae.reconstruct(corpus[0][:5]) == trained_vae.reconstruct(corpus[0][:5])
    assert trained_vae.sample(4, random_state=3) == trained_vae.sample(4, random_state=3)


def test_temperature_sampling_is_seeded(trained_vae):
    first = trained_vae.sample(5, temperature=1.0, random_state=1)
    assert first == trained_vae.sample(5, temperature=1.0, random_state=1)
    assert all(isinstance(text, str) for text in first)


def test_max_tokens_bounds_the_length(trained_vae):
    texts = trained_vae.sample(8, temperature=2.0, max_tokens=3, random_state=0)
    assert all(len(text.split()) <= 3 for text in texts)


def test_interpolation_endpoints_are_the_reconstructions(corpus, trained_vae):
    start, end = corpus[0][0], corpus[0][1]
    path = trained_vae.interpolate(start, end, steps=5)
    assert len(path) == 5
    assert [path[0], path[-1]] == trained_vae.reconstruct([start, end])


def test_interpolation_path_is_a_straight_line():
    path = interpolation_path(torch.zeros(2), torch.tensor([1.0, 2.0]), 3)
    torch.testing.assert_close(path, torch.tensor([[0.0, 0.0], [0.5, 1.0], [1.0, 2.0]]))


def test_generation_rejects_bad_arguments(corpus, trained_vae):
    with pytest.raises(ValueError, match="steps must be >= 2"):
        trained_vae.interpolate(corpus[0][0], corpus[0][1], steps=1)
    with pytest.raises(TypeError, match="start must be a str"):
        trained_vae.interpolate(["a"], corpus[0][1])
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        trained_vae.sample(2, temperature=-1.0)
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        trained_vae.sample(0)
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        decode_latents(trained_vae.module_, torch.zeros(1, 8), max_tokens=0)
