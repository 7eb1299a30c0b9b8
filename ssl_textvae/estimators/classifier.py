"""``BNVAEClassifier``: a head fitted on the posterior means of a BNVAE.

The VAE is a parameter (``vae``), as ``estimator`` is in scikit-learn's
``SelfTrainingClassifier``: an unfitted ``BNVAE`` is cloned and pretrained in
``fit`` on every text (``y == -1`` rows too), ``FrozenEstimator(fitted_bnvae)``
is used as it is. Every setting of the VAE lives in that one object, reachable
as ``vae__gamma``; the pretrained one is ``vae_``.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._docs import document_defaults
from ._classifier_base import (TextClassifierMixin, default_head, fit_or_reuse_vae, is_frozen,
                               load_nested_vae)
from ._vae_params import VAE_PARAMETER_DOC
from .bnvae import BNVAE
from ._validation import validate_params
from .features import EMBEDDING_WEIGHT, WORD_WEIGHT, fit_scaler, fit_words, head_features
from ..text.inputs import TextList, check_semi_supervised, check_texts


class BNVAEClassifier(TextClassifierMixin, BaseEstimator):
    __doc__ = ("""Semi-supervised text classifier: a head on the posterior means of a BN-VAE.

    The VAE is pretrained (without labels) on every text, ``y == -1`` (or
    ``"-1"``) marking the unlabeled ones as in scikit-learn's
    ``SelfTrainingClassifier``; the head is then fitted on the frozen means of the
    labeled texts. This is the paper's protocol, and cheap once the VAE is
    pretrained (one encoding pass, then the head). Fine-tuning the encoder as
    well (:class:`FineTunedBNVAEClassifier`) trains the LSTM for several epochs
    and was more accurate on short Yelp at every label budget, the most with
    thousands of labels. ``score`` leaves the -1 rows out, so
    ``cross_val_score(clf, X, y)`` scores each fold on its labeled texts.

    Parameters
    ----------""" + VAE_PARAMETER_DOC + """
    estimator : classifier or None
        The head, cloned into ``estimator_``; None means
        ``LogisticRegression(max_iter=1000)``. Pass one explicitly to tune it as
        ``estimator__C``.
    word_weight : float
        Beyond the paper: with a value > 0 the head also sees TF-IDF features of
        words and word pairs (fitted on every text of ``fit``, the -1 rows too),
        scaled by this weight, beside the standardized means
        (:mod:`ssl_textvae.estimators.features`). 0 is the paper's head on the means alone.
        On banking77 (77 intents) it is what lifts the head above TF-IDF alone;
        ``tune`` can search it (``recipes/README.md``, few-label benchmark).
    embedding_weight : float
        Beyond the paper, for a VAE with a pretrained encoder (``BNVAE(encoder=...)``):
        with a value > 0 the head also sees the encoder's L2-normalized vectors
        (:meth:`BNVAE.embed`) times this weight beside the standardized means, so
        what the pretrained encoder knows is not lost in the 32-number code.

    Attributes
    ----------
    vae_ : BNVAE
        The pretrained VAE used by ``transform`` and ``predict``.
    estimator_ : classifier
        The fitted head.
    words_ : TfidfVectorizer or None
        The word features (``word_weight > 0``), else None.
    scaler_ : StandardScaler or None
        Standardizes the means beside the words (``word_weight > 0``), else None.
    word_weight_, embedding_weight_ : float
        The weights ``fit`` used (``predict`` uses them, whatever the parameters say now).
    classes_ : ndarray
        Class labels, without the unlabeled marker.
    history_ : list of dict
        ``vae_.history_``.

    See Also
    --------
    BNVAE : the pretrained language model alone (a transformer).
    FineTunedBNVAEClassifier : the encoder fine-tuned with the labels.
    sklearn.frozen.FrozenEstimator : reuse a pretrained BNVAE for many heads.

    Examples
    --------
    >>> from ssl_textvae import BNVAE, BNVAEClassifier
    >>> texts = ["good food", "great staff", "rude staff", "cold food"] * 4
    >>> y = [1, 1, 0, 0] * 2 + [-1] * 8          # -1: unlabeled
    >>> clf = BNVAEClassifier(vae=BNVAE(latent_dim=4, embed_dim=8, hidden_dim=8, max_epochs=1,
    ...                                 verbose=0, random_state=0)).fit(texts, y)
    >>> clf.predict(["good staff"]).shape
    (1,)
    >>> clf.get_params()["vae__latent_dim"]
    4

    Reusing a pretrained VAE for another head, without pretraining again:

    >>> from sklearn.frozen import FrozenEstimator
    >>> other = BNVAEClassifier(vae=FrozenEstimator(clf.vae_)).fit(texts, y)
    >>> other.vae_ is clf.vae_
    True
    """)

    def __init__(self, vae=None, estimator=None, word_weight=0.0, embedding_weight=0.0):
        self.vae = vae
        self.estimator = estimator
        self.word_weight = word_weight
        self.embedding_weight = embedding_weight

    def fit(self, X, y, unlabeled=None):
        """Pretrain the VAE on ``X`` (and ``unlabeled``) unless it is frozen, then fit
        the head on the labeled rows of ``X``.

        Parameters
        ----------
        X : list of str
        y : array-like of int or str, shape (n_texts,)
            -1 (or "-1") marks unlabeled texts.
        unlabeled : re-iterable of str, optional
            More texts for pretraining only: a list, ``TextFile`` or ``datasets.Dataset``,
            which may be too large for memory.

        Returns
        -------
        self
        """
        params = validate_params(self, {"word_weight": WORD_WEIGHT, "embedding_weight": EMBEDDING_WEIGHT})
        word_weight, embedding_weight = float(params.word_weight), float(params.embedding_weight)
        texts, labels, unlabeled_rows = check_semi_supervised(X, y)   # the one check of X
        rows = np.flatnonzero(~unlabeled_rows)
        self.vae_, corpus = fit_or_reuse_vae(self.vae, texts, unlabeled, rows)
        labeled = TextList(texts[i] for i in rows)
        means = self.vae_._means(corpus)
        embeddings = self.vae_.embed(labeled) if embedding_weight else None   # refuses an LSTM encoder
        self.words_ = fit_words(texts) if word_weight else None
        self.scaler_ = fit_scaler(means) if word_weight or embedding_weight else None
        self.word_weight_, self.embedding_weight_ = word_weight, embedding_weight
        self.estimator_ = clone(self.estimator if self.estimator is not None else default_head())
        self.estimator_.fit(head_features(means, labeled, self.scaler_, self.words_, word_weight,
                                          embeddings, embedding_weight), labels[~unlabeled_rows])
        self.classes_ = self.estimator_.classes_
        self.history_ = self.vae_.history_
        return self

    def transform(self, X):
        """Posterior means of the pretrained VAE: array (n_texts, latent_dim)."""
        check_is_fitted(self, "vae_")
        return self.vae_.transform(X)

    def _head_input(self, X):
        check_is_fitted(self, "estimator_")
        embedding_weight = getattr(self, "embedding_weight_", 0.0)
        if getattr(self, "words_", None) is None and not embedding_weight:
            return self.transform(X)
        texts = check_texts(X, allow_empty=True)
        return head_features(self.vae_.transform(texts), texts, self.scaler_, self.words_,
                             self.word_weight_, self.vae_.embed(texts) if embedding_weight else None,
                             embedding_weight)

    def predict(self, X):
        features = self._head_input(X)   # checks that the classifier is fitted
        return self.estimator_.predict(features)

    def predict_proba(self, X):
        features = self._head_input(X)   # checks that the classifier is fitted
        return self.estimator_.predict_proba(features)

    def decision_function(self, X):
        features = self._head_input(X)   # checks that the classifier is fitted
        return self.estimator_.decision_function(features)

    def save(self, path):
        """Write the head (skops) and the pretrained VAE (in ``path/vae``) to directory ``path``.

        As :meth:`BNVAE.save`: written beside ``path``, then swapped in, so a failed
        save (``SaveError``, an ``OSError``) leaves what was there intact; config.json
        records the SHA-256 of every file, the VAE's too.
        """
        check_is_fitted(self, "estimator_")

        def write(directory, stamp):
            persistence.save_head({"estimator": self.estimator, "estimator_": self.estimator_,
                                   "word_weight": self.word_weight, "word_weight_": self.word_weight_,
                                   "embedding_weight": self.embedding_weight,
                                   "embedding_weight_": self.embedding_weight_,
                                   "words_": self.words_, "scaler_": self.scaler_,
                                   persistence.STAMP: stamp}, directory)
            self.vae_.save(os.path.join(directory, persistence.VAE_DIR))

        persistence.save_directory(path, type(self).__name__, write, vae_frozen=is_frozen(self.vae))

    @classmethod
    def load(cls, path, trusted=None):
        """Load what :meth:`save` wrote (format 1, 2 or 3). The head loads through
        ``skops.io`` with its default trusted types plus ``trusted`` (None or a list
        of exact type names; anything else is a ``TypeError``) and nothing else; no
        code is executed from the directory. From format 3, a file swapped or edited
        after saving (config.json, head.skops, anything in vae/) is refused with a
        ``ValueError`` naming it."""
        trusted = persistence.check_trusted(trusted)
        config = persistence.read_config(path, cls.__name__, ())
        if config["format_version"] == 1:   # the VAE at the top of the directory
            persistence.read_config(path, cls.__name__, ("vae_params", "history"))   # complete?
            fitted = BNVAE.from_directory(path, config["vae_params"], config["history"])
            vae = clone(fitted)
        else:
            vae, fitted = load_nested_vae(path, config.get("vae_frozen", False))
        head = persistence.load_head(path, trusted)
        persistence.check_saved_files(path, config, head.get(persistence.STAMP), persistence.HEAD)
        classifier = cls(vae=vae, estimator=head["estimator"], word_weight=head.get("word_weight", 0.0),
                         embedding_weight=head.get("embedding_weight", 0.0))
        classifier.vae_, classifier.estimator_ = fitted, head["estimator_"]
        classifier.words_, classifier.scaler_ = head.get("words_"), head.get("scaler_")
        classifier.word_weight_ = head.get("word_weight_", 0.0)
        classifier.embedding_weight_ = head.get("embedding_weight_", 0.0)
        classifier.classes_ = classifier.estimator_.classes_
        classifier.history_ = fitted.history_
        return classifier


BNVAEClassifier.__doc__ = document_defaults(BNVAEClassifier.__doc__, BNVAEClassifier.__init__)
