"""The dialogue product: BNCVAE, the conditional VAE for responses (Zhu et al., 2020, section 4),
with its torch module, its training task and its response metrics."""

from .bncvae import BNCVAE, dialogue_pairs, fit_word_vectors

__all__ = ["BNCVAE", "dialogue_pairs", "fit_word_vectors"]
