"""What the two classifiers share: the ``vae`` parameter (pretrained in ``fit``, or
reused as it is when wrapped in ``sklearn.frozen.FrozenEstimator``), scoring on
labeled texts, string-input tags, and the nested ``vae/`` directory of a save."""

from __future__ import annotations

import os
import warnings

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._validation import string_input_tags
from .bnvae import BNVAE
from ..text.data import rows_after_skipping
from ..text.inputs import ConcatTexts, TextList, check_labels, check_texts, iterate_texts


def default_head():
    """The head of ``estimator=None``."""
    return LogisticRegression(max_iter=1000)


class TextClassifierMixin(ClassifierMixin):
    """``score`` on labeled texts and the string-input tags of a text classifier."""

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on the labeled rows of ``X``: rows whose label is -1 (or "-1"),
        the unlabeled marker of ``fit``, are left out (with their ``sample_weight``).

        So ``cross_val_score(clf, X, y)`` and ``GridSearchCV`` score each fold on its
        labeled texts when ``y`` marks unlabeled ones, as ``fit`` reads them. A
        scorer given by name (``scoring="accuracy"``) calls ``predict`` instead and
        counts a -1 row as a wrong prediction: keep the default scoring (None).

        Raises ``ValueError`` when every row is unlabeled.
        """
        texts = check_texts(X, allow_empty=True)   # predict gives each a row
        y, unlabeled = check_labels(y, len(texts))
        if unlabeled.all():
            raise ValueError("Every label of y is -1 (unlabeled); score needs labeled texts. In a "
                             "cross-validation, give each fold some labeled rows (fewer folds, or "
                             "StratifiedKFold, which spreads the -1 rows over the folds).")
        if unlabeled.any():
            texts = [text for text, skip in zip(texts, unlabeled) if not skip]
            y = y[~unlabeled]
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight)[~unlabeled]
        return super().score(texts, y, sample_weight)

    def __sklearn_tags__(self):
        return string_input_tags(super().__sklearn_tags__())

    def set_params(self, **params):
        """As scikit-learn's; a ``vae__x`` or ``estimator__x`` while that parameter is
        None (its default, built in ``fit``) is a ``ValueError`` saying what to pass
        instead (scikit-learn would call ``None.set_params``)."""
        own = self.get_params(deep=False)
        for name, default in (("vae", BNVAE), ("estimator", default_head)):
            nested = sorted(key for key in params if key.startswith(name + "__"))
            if nested and name in own and params.get(name, own[name]) is None:
                built, inner = repr(default()), nested[0].split("__", 1)[1]
                wanted = f"{built[:-1]}{'' if built.endswith('()') else ', '}{inner}=...)"
                raise ValueError(f"{nested[0]} needs an explicit {name}: {name}=None means "
                                 f"{built}, built in fit. Pass {name}={wanted} instead.")
        return super().set_params(**params)


def fit_or_reuse_vae(vae, texts, unlabeled=None, rows=None, encoder_ids=False):
    """``(vae_, corpus)``: the pretrained BNVAE of a classifier whose ``vae`` parameter is
    ``vae``, and its ``encode(texts[rows], encoder_ids)`` (None without ``rows``).
    ``texts`` are the checked texts of ``fit`` (a ``TextList``), ``rows`` its labeled
    ones (never empty).

    - None: a ``BNVAE()`` with its defaults, pretrained on ``texts`` (and ``unlabeled``);
    - a ``BNVAE``: cloned and pretrained likewise (a fitted one is pretrained
      again, with a warning saying how to reuse it);
    - ``FrozenEstimator(fitted_bnvae)``: used as it is, never pretrained again.

    Pretraining hands over the rows it encoded, so no text is tokenized twice.
    """
    picked = None if rows is None else TextList(texts[i] for i in rows)
    if isinstance(vae, FrozenEstimator):
        inner = vae.estimator
        if not isinstance(inner, BNVAE):
            raise TypeError("vae=FrozenEstimator(...) must wrap a fitted BNVAE, got "
                            f"FrozenEstimator({type(inner).__name__}).")
        check_is_fitted(inner, "module_", msg="The BNVAE inside FrozenEstimator is not fitted yet; "
                        "fit it first, or pass the unfitted BNVAE itself to pretrain it here.")
        if unlabeled is not None:
            warnings.warn("unlabeled texts are ignored: vae is a frozen, already pretrained BNVAE.",
                          UserWarning, stacklevel=3)
        return inner, None if rows is None else inner.encode(picked, encoder_ids)
    if vae is None:
        vae = BNVAE()
    if not isinstance(vae, BNVAE):
        raise TypeError("vae must be a BNVAE (pretrained in fit), FrozenEstimator(fitted_bnvae) "
                        f"(used as it is) or None, got {type(vae).__name__}.")
    if hasattr(vae, "module_"):
        warnings.warn("The BNVAE passed as vae is already fitted; fit clones it and pretrains it "
                      "again. To reuse it as it is, pass vae=FrozenEstimator(vae) "
                      "(from sklearn.frozen import FrozenEstimator).", UserWarning, stacklevel=3)
    fitted = clone(vae)
    corpus = fitted._fit(texts if unlabeled is None else ConcatTexts(texts, iterate_texts(unlabeled)),
                         keep=None if rows is None else rows_after_skipping(texts, rows))
    return fitted, None if rows is None else fitted._hand_over(corpus, picked, encoder_ids)


def is_frozen(vae) -> bool:
    return isinstance(vae, FrozenEstimator)


def load_nested_vae(path, frozen):
    """``(vae, vae_)`` of a classifier saved with its pretrained BNVAE in ``path/vae``:
    the fitted BNVAE, and the ``vae`` parameter it was fitted from (the BNVAE
    itself, frozen, or an unfitted clone with its parameters)."""
    fitted = BNVAE.load(os.path.join(path, persistence.VAE_DIR))
    return (FrozenEstimator(fitted) if frozen else clone(fitted)), fitted
