"""``ssl_textvae.load``: any saved model, by the class its directory names."""

from __future__ import annotations

from .estimators import persistence
from .estimators.bnvae import BNVAE
from .estimators.classifier import BNVAEClassifier
from .dialogue.bncvae import BNCVAE
from .estimators.fine_tuned import FineTunedBNVAEClassifier

LOADERS = {cls.__name__: cls for cls in (BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier, BNCVAE)}


def load(path, trusted=None):
    """Load the model that ``save`` wrote to directory ``path``, whatever its class.

    Parameters
    ----------
    path : str or path-like
        A directory written by ``BNVAE.save``, ``BNVAEClassifier.save``,
        ``FineTunedBNVAEClassifier.save`` (format 1, 2 or 3) or ``BNCVAE.save``.
    trusted : list of str or None, default=None
        More types to trust in a classifier's ``head.skops``, by exact name (see
        :meth:`BNVAEClassifier.load`); anything but None or a list (or tuple) of
        str is a ``TypeError``.

    Returns
    -------
    BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier or BNCVAE
        The fitted model; no code is executed from the directory. A file swapped or
        edited after saving (format 3) is refused with a ``ValueError`` naming it.

    Examples
    --------
    >>> import ssl_textvae
    >>> model = ssl_textvae.load("model_dir")  # doctest: +SKIP
    """
    trusted = persistence.check_trusted(trusted)   # before anything is read
    name = persistence.saved_class(path)
    if name not in LOADERS:
        raise ValueError(f"{path!r} holds a {name!r}; ssl_textvae.load reads {sorted(LOADERS)}.")
    if name == "BNVAEClassifier":
        return BNVAEClassifier.load(path, trusted=trusted)
    return LOADERS[name].load(path)
