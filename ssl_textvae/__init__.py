"""Semi-supervised text classification with BN-VAE (Zhu et al., ACL 2020)."""

from ._version import __version__
from .dialogue import BNCVAE
from .engine.diagnostics import KLCollapseWarning, KLExplosionWarning, TrainingDivergedError
from .estimators.bnvae import BNVAE
from .estimators.classifier import BNVAEClassifier
from .estimators.fine_tuned import FineTunedBNVAEClassifier
from .loading import load
from .nn.adaptive_softmax import SOFTMAXES
from .text.inputs import ConcatTexts, TextFile, load_hf_texts, read_labeled_file
from .text.tables import read_table
from .text.tokenization import TextTokenizer

__all__ = ["BNCVAE", "BNVAE", "BNVAEClassifier", "ConcatTexts", "FineTunedBNVAEClassifier",
           "KLCollapseWarning", "SOFTMAXES", "KLExplosionWarning", "TextFile", "TextTokenizer",
           "TrainingDivergedError", "__version__", "load", "load_hf_texts", "read_labeled_file",
           "read_table"]
