"""Semi-supervised text classification with BN-VAE (Zhu et al., ACL 2020)."""

from ._version import __version__
from .data import ConcatTexts, TextFile, load_hf_texts, read_labeled_file
from .dialogue import BNCVAE
from .estimator import BNVAE, BNVAEClassifier
from .fine_tuning import FineTunedBNVAEClassifier
from .tokenization import TextTokenizer
from .training import KLCollapseWarning

__all__ = ["BNCVAE", "BNVAE", "BNVAEClassifier", "ConcatTexts", "FineTunedBNVAEClassifier",
           "KLCollapseWarning", "TextFile", "TextTokenizer",
           "__version__", "load_hf_texts", "read_labeled_file"]
