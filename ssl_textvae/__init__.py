"""Semi-supervised text classification with BN-VAE (Zhu et al., ACL 2020)."""

from ._version import __version__
from .adaptive_softmax import SOFTMAXES
from .bnvae import BNVAE
from .classifier import BNVAEClassifier
from .diagnostics import KLCollapseWarning, KLExplosionWarning, TrainingDivergedError
from .dialogue import BNCVAE
from .fine_tuned import FineTunedBNVAEClassifier
from .inputs import ConcatTexts, TextFile, load_hf_texts, read_labeled_file
from .loading import load
from .tables import read_table
from .tokenization import TextTokenizer

__all__ = ["BNCVAE", "BNVAE", "BNVAEClassifier", "ConcatTexts", "FineTunedBNVAEClassifier",
           "KLCollapseWarning", "SOFTMAXES", "KLExplosionWarning", "TextFile", "TextTokenizer",
           "TrainingDivergedError", "__version__", "load", "load_hf_texts", "read_labeled_file",
           "read_table"]
