"""``FineTunedBNVAEClassifier``: a BN-VAE's encoder fine-tuned with the labels.

:class:`BNVAEClassifier` fits a head on frozen posterior means; with thousands of
labels that linear view of a 32-dimensional code is the limit. Here the encoder
and a linear head on its means are trained together on the labeled texts
(:mod:`ssl_textvae.engine.fine_tuning`). The ``vae`` parameter means what it means for
:class:`BNVAEClassifier`; the settings of the fine-tuning phase carry the prefix
``fine_tuning_``, so no name is shared with the pretraining ones (``vae__lr``
against ``fine_tuning_lr``).
"""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._docs import document_defaults
from ._classifier_base import TextClassifierMixin, fit_or_reuse_vae, is_frozen, load_nested_vae
from ._validation import Interval, Options, python_scalar, validate_params
from ._vae_params import VAE_PARAMETER_DOC
from ..engine.fine_tuning import (FEATURES, OPTIMIZERS, SELECTIONS, EncoderClassifier, FineTuningConfig,
                          features, fine_tune, logits)
from ..text.inputs import check_labels, check_semi_supervised, check_texts
from ..runtime.devices import PRECISIONS, check_finite_means, flush_denormals, resolve_device

FINE_TUNED_WEIGHTS = "fine_tuned.safetensors"
PREFIX = "fine_tuning_"
FINE_TUNING_CONSTRAINTS = {
    "features": Options(*FEATURES),
    "dropout": Interval(numbers.Real, 0, 1, closed="left"),
    "head_dropout": Interval(numbers.Real, 0, 1, closed="left"),
    "fine_tuning_max_epochs": Interval(numbers.Integral, 1, None),
    "fine_tuning_optimizer": Options(*OPTIMIZERS),
    "fine_tuning_lr": Interval(numbers.Real, 0, None, closed="neither"),
    "fine_tuning_batch_size": Interval(numbers.Integral, 2, None),
    "fine_tuning_clip_grad_norm": Interval(numbers.Real, 0, None, closed="neither", allow_none=True),
    "fine_tuning_weight_decay": Interval(numbers.Real, 0, None),
    "fine_tuning_validation_fraction": Interval(numbers.Real, 0, 1, closed="neither"),
    "fine_tuning_patience": Interval(numbers.Integral, 1, None),
    "fine_tuning_max_lr_halvings": Interval(numbers.Integral, 0, None),
    "fine_tuning_selection": Options(*SELECTIONS),
    "precision": Options(*PRECISIONS),
    "verbose": Interval(numbers.Integral, 0, None, allow_bool=True),
}
# Names of format 1 (ssl_textvae 0.1), before the fine-tuning settings got their prefix.
RENAMED = {name[len(PREFIX):]: name for name in FINE_TUNING_CONSTRAINTS if name.startswith(PREFIX)}


class FineTunedBNVAEClassifier(TextClassifierMixin, BaseEstimator):
    __doc__ = ("""Semi-supervised text classifier: a BN-VAE's encoder fine-tuned with the labels.

    The VAE is pretrained (without labels) on every text, ``y == -1`` marking the
    unlabeled ones, exactly as in :class:`BNVAEClassifier`, or reused as it is
    when frozen. Then a copy of its encoder and a linear head are trained together
    on the labeled texts with cross-entropy; the head starts as a logistic
    regression on the frozen means (what :class:`BNVAEClassifier` predicts with).
    A stratified ``fine_tuning_validation_fraction`` of the labels, or
    ``fit(..., validation_data=(texts, labels))``, picks the epoch; epoch 0, the
    frozen start, competes too. On short Yelp it beat a head on the frozen means
    (:class:`BNVAEClassifier`, which trains no encoder) at every label budget,
    the most with thousands of labels. ``score`` leaves the -1 rows out, so
    ``cross_val_score(clf, X, y)`` scores each fold on its labeled texts.

    The official BN-VAE code's classifier protocol is
    ``fine_tuning_optimizer="sgd", fine_tuning_lr=1.0, fine_tuning_batch_size=16,
    fine_tuning_clip_grad_norm=5.0, head_dropout=0.5, fine_tuning_patience=2,
    fine_tuning_max_lr_halvings=5, fine_tuning_selection="loss"`` with its
    10,000-sentence labeled validation file as ``validation_data``.

    Parameters
    ----------""" + VAE_PARAMETER_DOC + """
        The pretrained BNVAE is never modified: the encoder is fine-tuned in a copy.
    features : {"mean", "hidden"}
        What the linear head reads: the posterior means after the batch norm (the
        representation ``BNVAE.transform`` gives), or the encoder LSTM's last state.
    dropout : float
        Dropout on the encoder's embeddings and last state while fine-tuning.
    head_dropout : float
        Dropout on the features the linear head reads.
    fine_tuning_max_epochs : int
    fine_tuning_optimizer : {"adam", "sgd"}
    fine_tuning_lr : float
        The optimizer's learning rate for the encoder and the head.
    fine_tuning_batch_size : int
    fine_tuning_clip_grad_norm : float or None
        Clip the gradients' global norm to this value before each step.
    fine_tuning_weight_decay : float
    fine_tuning_validation_fraction : float
        Share of the labeled texts held out to pick the epoch (at least one per
        class) when ``fit`` gets no ``validation_data``; the model is not refitted
        on them.
    fine_tuning_patience : int
        Epochs without a better validation score that make a plateau.
    fine_tuning_max_lr_halvings : int
        At a plateau, halve the learning rate and go back to the best weights, up
        to this many times; the next plateau stops training. 0 stops at the first.
    fine_tuning_selection : {"accuracy", "loss"}
        What "better" means on the validation labels: higher accuracy (ties go to
        the lower cross-entropy), or lower cross-entropy.
    precision : {"auto", "fp32", "bf16"}
        Of fine-tuning and prediction; as for :class:`BNVAE`.
    device : str
        Where fine-tuning and prediction run ("auto": CUDA when present).
    random_state : int, RandomState instance or None
        Seeds the validation split, the head's start, batch order and dropout of
        the fine-tuning (the pretraining has ``vae__random_state``).
    verbose : int
        1 shows a progress bar and a line per fine-tuning epoch.

    Attributes
    ----------
    vae_ : BNVAE
        The pretrained VAE (its tokenizer encodes the texts at predict time).
    module_ : torch.nn.Module
        The fine-tuned encoder with its head.
    classes_ : ndarray
    history_ : list of dict
        Per fine-tuning epoch: ``train_loss``, ``valid_loss``, ``valid_accuracy``, ``lr``.
    best_epoch_ : int
        The epoch whose weights were kept (0: the frozen start).

    See Also
    --------
    BNVAEClassifier : a head on the frozen means only; far cheaper to fit.
    BNVAE : the pretrained language model alone.

    Examples
    --------
    >>> from ssl_textvae import BNVAE, FineTunedBNVAEClassifier
    >>> texts = ["good food", "great staff", "rude staff", "cold food"] * 6
    >>> y = [1, 1, 0, 0] * 4 + [-1] * 8            # -1: unlabeled, used for pretraining
    >>> vae = BNVAE(latent_dim=4, embed_dim=8, hidden_dim=8, max_epochs=1, verbose=0,
    ...             random_state=0)
    >>> clf = FineTunedBNVAEClassifier(vae=vae, fine_tuning_max_epochs=2, verbose=0,
    ...                                random_state=0).fit(texts, y)
    >>> clf.predict(["good staff"]).shape
    (1,)
    """)

    def __init__(self, vae=None, features="mean", dropout=0.0, head_dropout=0.0,
                 fine_tuning_max_epochs=20, fine_tuning_optimizer="adam", fine_tuning_lr=1e-3,
                 fine_tuning_batch_size=32, fine_tuning_clip_grad_norm=None,
                 fine_tuning_weight_decay=0.0, fine_tuning_validation_fraction=0.1,
                 fine_tuning_patience=3, fine_tuning_max_lr_halvings=0,
                 fine_tuning_selection="accuracy", precision="auto", device="auto",
                 random_state=None, verbose=1):
        self.vae = vae
        self.features = features
        self.dropout = dropout
        self.head_dropout = head_dropout
        self.fine_tuning_max_epochs = fine_tuning_max_epochs
        self.fine_tuning_optimizer = fine_tuning_optimizer
        self.fine_tuning_lr = fine_tuning_lr
        self.fine_tuning_batch_size = fine_tuning_batch_size
        self.fine_tuning_clip_grad_norm = fine_tuning_clip_grad_norm
        self.fine_tuning_weight_decay = fine_tuning_weight_decay
        self.fine_tuning_validation_fraction = fine_tuning_validation_fraction
        self.fine_tuning_patience = fine_tuning_patience
        self.fine_tuning_max_lr_halvings = fine_tuning_max_lr_halvings
        self.fine_tuning_selection = fine_tuning_selection
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y, unlabeled=None, validation_data=None):
        """Pretrain the VAE on ``X`` (and ``unlabeled``) unless it is frozen, then
        fine-tune its encoder and a head on the labeled rows of ``X``.

        Parameters
        ----------
        X : list of str
        y : array-like of int or str, shape (n_texts,)
            -1 (or "-1") marks unlabeled texts (pretraining only).
        unlabeled : re-iterable of str, optional
            More texts for pretraining only.
        validation_data : (texts, labels), optional
            Other labeled texts that pick the epoch and drive the schedule; without
            it a stratified ``fine_tuning_validation_fraction`` of the labeled rows
            is held out for that.

        Returns
        -------
        self
        """
        params = validate_params(self, FINE_TUNING_CONSTRAINTS)   # numpy scalars as Python numbers
        texts, labels, unlabeled_rows = check_semi_supervised(X, y)   # the one check of X
        self.vae_, corpus = fit_or_reuse_vae(self.vae, texts, unlabeled, np.flatnonzero(~unlabeled_rows),
                                             encoder_ids=True)
        labels = labels[~unlabeled_rows]
        self.classes_ = np.unique(labels)
        targets = np.searchsorted(self.classes_, labels)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if validation_data is None:
            train_rows, valid_rows = _split(targets, params.fine_tuning_validation_fraction, seed)
            train, valid = corpus.subset(train_rows), corpus.subset(valid_rows)
            train_targets, valid_targets = targets[train_rows], targets[valid_rows]
        else:
            train, train_targets = corpus, targets
            valid, valid_targets = self._validation_set(validation_data)
        device = resolve_device(self.device)
        config = fine_tuning_config(params, encoder_lr=self.vae_.encoder_lr)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
                flush_denormals():
            torch.manual_seed(seed)
            self.module_ = self._new_module().to(device)
            self._init_head(train, train_targets, device)
            self.history_, self.best_epoch_ = fine_tune(self.module_, train, train_targets, valid,
                                                        valid_targets, config, device, seed)
        return self

    def _new_module(self):
        return EncoderClassifier(self.vae_.module_, len(self.classes_), python_scalar(self.dropout),
                                 self.features, python_scalar(self.head_dropout))

    def _validation_set(self, validation_data):
        """The encoded texts and class indices of ``validation_data = (texts, labels)``."""
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (texts, labels); got "
                            f"{type(validation_data).__name__}.")
        texts = check_texts(validation_data[0], name="validation_data[0]")
        labels, _ = check_labels(validation_data[1], len(texts), allow_unlabeled=False)
        unknown = np.setdiff1d(labels, self.classes_)
        if len(unknown):
            raise ValueError(f"validation_data has labels absent from y: {unknown.tolist()[:5]}.")
        return self.vae_.encode(texts, encoder_ids=True), np.searchsorted(self.classes_, labels)

    def _init_head(self, corpus, targets, device):
        """Logistic regression on the frozen features: the head's starting weights."""
        regression = LogisticRegression(max_iter=1000).fit(
            features(self.module_, corpus, device, self.precision), targets)
        weight, bias = regression.coef_, regression.intercept_
        if len(self.classes_) == 2:   # one logit per class: class 0 gets the negated half
            weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        self.module_.set_head(weight, bias)

    def _run(self, function, X):
        """``function(module, corpus, device, precision)`` with ``module_`` moved to the
        resolved device (a model trained on a GPU or unpickled on a CPU runs where it is)."""
        check_is_fitted(self, "module_")
        device = resolve_device(self.device)
        return function(self.module_.to(device), self.vae_.encode(X, encoder_ids=True), device,
                        self.precision)

    def _logits(self, X):
        return self._run(logits, X)

    def transform(self, X):
        """The fine-tuned features: posterior means (n_texts, latent_dim), or the LSTM's
        last state (n_texts, hidden_dim) with ``features="hidden"``."""
        return check_finite_means(self._run(features, X))

    def decision_function(self, X):
        """Class logits: (n_texts,) for two classes (positive minus negative), else (n_texts, n_classes)."""
        scores = self._logits(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X):
        return torch.softmax(torch.as_tensor(self._logits(X)), 1).numpy()

    def predict(self, X):
        scores = self._logits(X)   # checks that the model is fitted
        return self.classes_[scores.argmax(1)]

    def save(self, path):
        """Write config.json, the fine-tuned weights (safetensors) and the pretrained
        BNVAE (in ``path/vae``) to directory ``path``.

        As :meth:`BNVAE.save`: written beside ``path``, then swapped in, so a failed
        save (``SaveError``, an ``OSError``) leaves what was there intact; config.json
        records the SHA-256 of every file, the VAE's too.
        """
        check_is_fitted(self, "module_")
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "vae"}

        def write(directory, stamp):
            persistence.save_weights(self.module_, os.path.join(directory, FINE_TUNED_WEIGHTS), stamp)
            self.vae_.save(os.path.join(directory, persistence.VAE_DIR))

        persistence.save_directory(path, type(self).__name__, write, params=persistence.jsonable(params),
                                   vae_frozen=is_frozen(self.vae), classes=self.classes_.tolist(),
                                   classes_dtype=self.classes_.dtype.str, history=self.history_,
                                   best_epoch=self.best_epoch_)

    @classmethod
    def load(cls, path):
        """Load what :meth:`save` wrote (format 1, 2 or 3; no code is executed from the
        files). From format 3, a file swapped or edited after saving is refused with a
        ``ValueError`` naming it."""
        config = persistence.read_config(path, cls.__name__, ("params", "classes", "classes_dtype",
                                                              "history", "best_epoch"))
        params = config["params"]
        if isinstance(params, dict):
            params = {RENAMED.get(name, name): value for name, value in params.items()}
        persistence.check_params(path, params, cls, FINE_TUNING_CONSTRAINTS, not_saved=("vae",))
        # format 1 took only a fitted BNVAE, used as it is: frozen
        vae, fitted = load_nested_vae(path, config.get("vae_frozen", True))
        model = cls(vae=vae, **params)
        model.vae_ = fitted
        with persistence.reading_field(path, "classes_dtype"):
            dtype = np.dtype(config["classes_dtype"])
        with persistence.reading_field(path, "classes"):
            model.classes_ = np.asarray(config["classes"], dtype=dtype)
        weights = os.path.join(path, FINE_TUNED_WEIGHTS)
        model.module_ = persistence.load_weights(model._new_module(), weights)
        persistence.check_saved_files(path, config, persistence.weights_stamp(weights),
                                      FINE_TUNED_WEIGHTS)
        model.history_, model.best_epoch_ = config["history"], config["best_epoch"]
        return model

    def __getstate__(self):
        # A CPU state dict, as BNVAE stores: a GPU-trained model unpickles on a CPU-only machine.
        state = dict(self.__dict__)
        if "module_" in state:
            state["module_"] = {k: v.detach().cpu() for k, v in state["module_"].state_dict().items()}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if isinstance(state.get("module_"), dict):   # rebuilt on vae_'s module (a transformer too)
            self.module_ = self._new_module()
            self.module_.load_state_dict(state["module_"])
            self.module_.eval()


FineTunedBNVAEClassifier.__doc__ = document_defaults(FineTunedBNVAEClassifier.__doc__,
                                                     FineTunedBNVAEClassifier.__init__)


def fine_tuning_config(params, encoder_lr=None) -> FineTuningConfig:
    """The ``FineTuningConfig`` of a FineTunedBNVAEClassifier's parameters ``params`` (the
    classifier, or the namespace of ``validate_params``), field by field by name."""
    named = {name[len(PREFIX):]: python_scalar(getattr(params, name)) for name in RENAMED.values()
             if name != "fine_tuning_validation_fraction"}
    return FineTuningConfig(**named, precision=params.precision, verbose=params.verbose,
                            encoder_lr=encoder_lr)


def _split(targets, fraction, seed):
    """Stratified (train rows, validation rows), at least one validation row per class."""
    rows = np.arange(len(targets))
    n_classes = len(np.unique(targets))
    if np.bincount(targets).min() < 2:
        raise ValueError("Every class needs at least 2 labeled texts (one for early stopping); got "
                         f"class counts {np.bincount(targets).tolist()}.")
    n_valid = max(n_classes, int(round(fraction * len(rows))))
    if len(rows) - n_valid < n_classes:
        raise ValueError(f"{len(rows)} labeled texts leave too few to train on after holding out "
                         f"{n_valid} for early stopping; lower fine_tuning_validation_fraction or "
                         "add labels.")
    train_rows, valid_rows = train_test_split(rows, test_size=n_valid, stratify=targets,
                                              random_state=seed)
    return np.sort(train_rows), np.sort(valid_rows)
