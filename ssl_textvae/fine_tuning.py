"""Fine-tuning a pretrained BN-VAE's encoder with the labels.

:class:`BNVAEClassifier` fits a head on frozen posterior means; with thousands of
labels that linear view of a 32-dimensional code is the limit. Here the encoder
(embeddings, LSTM, the layer to the posterior) and a linear head on the posterior
means are trained together on the labeled texts with cross-entropy, starting from
the pretrained weights, with early stopping on a held-out share of the labels.
The batch norm on the means keeps its pretrained statistics (eval mode), so the
features keep the scale the head was initialized on.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ._validation import Interval, Options, check_classes, check_labels, check_texts, validate_params
from .data import bucket_batches, collate
from .estimator import BNVAE, clone_sharing_vae
from .metrics import ENCODE_BATCH_SIZE
from .runtime import PRECISIONS, autocast_context, check_finite_means, flush_denormals, resolve_device

FINE_TUNING_OPTIMIZERS = ("adam", "sgd")
FINE_TUNING_CONSTRAINTS = {
    "max_epochs": Interval(numbers.Integral, 1, None),
    "lr": Interval(numbers.Real, 0, None, closed="neither"),
    "batch_size": Interval(numbers.Integral, 2, None),
    "dropout": Interval(numbers.Real, 0, 1, closed="left"),
    "weight_decay": Interval(numbers.Real, 0, None),
    "validation_fraction": Interval(numbers.Real, 0, 1, closed="neither"),
    "patience": Interval(numbers.Integral, 1, None),
    "max_lr_halvings": Interval(numbers.Integral, 0, None),
    "optimizer": Options(*FINE_TUNING_OPTIMIZERS),
    "clip_grad_norm": Interval(numbers.Real, 0, None, closed="neither", allow_none=True),
    "head_dropout": Interval(numbers.Real, 0, 1, closed="left"),
    "selection": Options("accuracy", "loss"),
    "features": Options("mean", "hidden"),
    "precision": Options(*PRECISIONS),
}


class _EncoderClassifier(nn.Module):
    """The pretrained encoder, then a linear layer on its posterior means (after the
    batch norm) or on the LSTM's last state."""

    def __init__(self, vae_module, n_classes, dropout, features, head_dropout=0.0):
        super().__init__()
        self.encoder = copy.deepcopy(vae_module.encoder)
        self.encoder.dropout.p = dropout
        self.mean_norm = copy.deepcopy(vae_module.mean_norm)
        self.features = features
        width = vae_module.latent_dim if features == "mean" else self.encoder.lstm.hidden_size
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(width, n_classes)

    def representation(self, tokens, lengths):
        if self.features == "mean":
            mean, _ = self.encoder(tokens, lengths)
            return self.mean_norm(mean)                                   # fp32
        return self.encoder.dropout(self.encoder.last_state(tokens, lengths)).float()

    def forward(self, tokens, lengths):
        return self.head(self.head_dropout(self.representation(tokens, lengths)))

    def train(self, mode=True):
        super().train(mode)
        self.mean_norm.eval()   # pretrained statistics: batches of a few labels would move them
        return self


class FineTunedBNVAEClassifier(ClassifierMixin, BaseEstimator):
    """A pretrained :class:`~ssl_textvae.BNVAE`'s encoder fine-tuned with the labels.

    The head starts as a logistic regression fitted on the frozen posterior means
    of the training labels (what :class:`~ssl_textvae.BNVAEClassifier` predicts
    with), then encoder and head are trained together with Adam on cross-entropy.
    A stratified ``validation_fraction`` of the labels picks the epoch: training
    stops after ``patience`` epochs without a better validation accuracy (ties go
    to the lower loss) and the best weights are kept; epoch 0, the frozen start,
    competes too, so fine-tuning never ends worse on the validation labels.
    With ``max_lr_halvings`` > 0 a plateau halves the learning rate and reloads
    the best weights instead of stopping, up to that many times.

    ``fit(X, y, validation_data=(X_val, y_val))`` selects on a separate labeled
    set instead of a share of ``y``. The paper's protocol (the official BN-VAE
    code's classifier) is ``optimizer="sgd", lr=1.0, batch_size=16,
    clip_grad_norm=5.0, head_dropout=0.5, patience=2, max_lr_halvings=5,
    selection="loss"`` with its 10,000-sentence labeled validation file as
    ``validation_data``: more labels for selection than for training, which a
    user with N labels does not have.

    Parameters
    ----------
    vae : BNVAE
        A fitted BNVAE; it is copied, never modified. ``clone`` shares it, so
        ``cross_val_score`` and ``GridSearchCV`` fine-tune from one pretraining.
    features : {"mean", "hidden"}, default="mean"
        What the linear head reads: the posterior means after the batch norm (the
        representation ``BNVAE.transform`` gives), or the encoder LSTM's last state.
    max_epochs : int, default=20
    optimizer : {"adam", "sgd"}, default="adam"
    lr : float, default=1e-3
        The optimizer's learning rate for the encoder and the head.
    batch_size : int, default=32
    clip_grad_norm : float or None, default=None
        Clip the gradients' global norm to this value before each step.
    dropout : float, default=0.0
        Dropout on the encoder's embeddings and last state while fine-tuning.
    head_dropout : float, default=0.0
        Dropout on the features the linear head reads (the posterior means).
    weight_decay : float, default=0.0
    validation_fraction : float, default=0.1
        Share of the labeled texts held out for early stopping (at least one per
        class) when ``fit`` gets no ``validation_data``; the model is not
        refitted on them.
    patience : int, default=3
        Epochs without a better validation score that make a plateau.
    max_lr_halvings : int, default=0
        At a plateau, halve the learning rate and go back to the best weights, up
        to this many times; the next plateau stops training. 0 stops at the first.
    selection : {"accuracy", "loss"}, default="accuracy"
        What "better" means on the validation labels: higher accuracy (ties go
        to the lower cross-entropy), or lower cross-entropy.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        As for :class:`~ssl_textvae.BNVAE`: bf16 autocast where the hardware runs it.
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
    verbose : int, default=1
        1 shows a progress bar per epoch and a line per epoch.

    Attributes
    ----------
    classes_ : ndarray
    module_ : torch.nn.Module
        The fine-tuned encoder with its head.
    history_ : list of dict
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_accuracy``, ``lr``.
    best_epoch_ : int
        The epoch whose weights were kept (0: the frozen start).
    """

    def __init__(self, vae=None, features="mean", max_epochs=20, optimizer="adam", lr=1e-3,
                 batch_size=32, clip_grad_norm=None, dropout=0.0, head_dropout=0.0, weight_decay=0.0,
                 validation_fraction=0.1, patience=3, max_lr_halvings=0, selection="accuracy",
                 precision="auto", device="auto", random_state=None, verbose=1):
        self.vae = vae
        self.features = features
        self.max_epochs = max_epochs
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.clip_grad_norm = clip_grad_norm
        self.dropout = dropout
        self.head_dropout = head_dropout
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.max_lr_halvings = max_lr_halvings
        self.selection = selection
        self.precision = precision
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_clone__(self):
        return clone_sharing_vae(self)

    def fit(self, X, y, validation_data=None):
        """Fine-tune on labeled texts ``X`` (list of str) with labels ``y`` (no -1:
        the unlabeled texts belong to the BNVAE's pretraining).

        ``validation_data``, optional, is a pair ``(texts, labels)`` of other labeled
        texts that pick the epoch and drive the schedule; without it a stratified
        ``validation_fraction`` of ``y`` is held out for that."""
        validate_params(self, FINE_TUNING_CONSTRAINTS)
        if not isinstance(self.vae, BNVAE):
            raise TypeError("vae must be a fitted BNVAE (pretrain one first); got "
                            f"{type(self.vae).__name__}.")
        check_is_fitted(self.vae, "module_", msg="The BNVAE passed as vae is not fitted yet; fit it first.")
        texts = check_texts(X)
        y, _ = check_labels(y, len(texts), allow_unlabeled=False)
        self.classes_ = check_classes(y)
        targets = np.searchsorted(self.classes_, y)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        corpus = self.vae.encode(texts)
        if validation_data is None:
            train_rows, valid_rows = _split(targets, self.validation_fraction, seed)
            train, valid = corpus.subset(train_rows), corpus.subset(valid_rows)
            train_targets, valid_targets = targets[train_rows], targets[valid_rows]
        else:
            train, train_targets = corpus, targets
            valid, valid_targets = self._validation_set(validation_data)
        device = resolve_device(self.device)

        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
                flush_denormals():
            torch.manual_seed(seed)
            self.module_ = _EncoderClassifier(self.vae.module_, len(self.classes_), self.dropout,
                                              self.features, self.head_dropout).to(device)
            self._init_head(train, train_targets, device)
            self.history_, self.best_epoch_ = self._train(train, train_targets, valid,
                                                          valid_targets, device, seed)
        self.module_.eval()
        return self

    def _validation_set(self, validation_data):
        """The encoded texts and class indices of ``validation_data = (texts, labels)``."""
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (texts, labels); got "
                            f"{type(validation_data).__name__}.")
        texts = check_texts(validation_data[0])
        labels, _ = check_labels(validation_data[1], len(texts), allow_unlabeled=False)
        unknown = np.setdiff1d(labels, self.classes_)
        if len(unknown):
            raise ValueError(f"validation_data has labels absent from y: {unknown.tolist()[:5]}.")
        return self.vae.encode(texts), np.searchsorted(self.classes_, labels)

    def _init_head(self, corpus, targets, device):
        """Logistic regression on the frozen features: the head's starting weights."""
        features = self._features(corpus, device)
        regression = LogisticRegression(max_iter=1000).fit(features, targets)
        weight, bias = regression.coef_, regression.intercept_
        if len(self.classes_) == 2:   # one logit per class: class 0 gets the negated half
            weight, bias = np.vstack([-weight / 2, weight / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        with torch.no_grad():
            self.module_.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.module_.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def _score(self, accuracy, loss):
        """Larger is better: the validation result as ``selection`` ranks it."""
        return (-loss,) if self.selection == "loss" else (accuracy, -loss)

    def _train(self, train, train_targets, valid, valid_targets, device, seed):
        make = torch.optim.SGD if self.optimizer == "sgd" else torch.optim.Adam
        optimizer = make(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(seed)
        labels = torch.as_tensor(train_targets, device=device)
        best = (self._score(*self._validate(valid, valid_targets, device)), 0,
                copy.deepcopy(self.module_.state_dict()))
        history, bad_epochs, halvings = [], 0, 0
        for epoch in range(1, self.max_epochs + 1):
            self.module_.train()
            total = torch.zeros((), dtype=torch.float64, device=device)  # no sync per step
            count = 0
            batches = bucket_batches(train.lengths, self.batch_size, shuffle=True, rng=rng)
            for indices in tqdm(batches, desc=f"fine-tuning {epoch}/{self.max_epochs}", leave=False,
                                disable=not self.verbose, unit="batch"):
                tokens, lengths = (t.to(device) for t in collate(train, indices))
                with autocast_context(device, self.precision):
                    logits = self.module_(tokens, lengths)
                loss = F.cross_entropy(logits.float(), labels[torch.as_tensor(indices, device=device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.module_.parameters(), self.clip_grad_norm)
                optimizer.step()
                total += loss.detach().double() * len(indices)
                count += len(indices)
            accuracy, valid_loss = self._validate(valid, valid_targets, device)
            lr = optimizer.param_groups[0]["lr"]
            history.append({"epoch": epoch, "train_loss": float(total) / max(count, 1),
                            "valid_loss": valid_loss, "valid_accuracy": accuracy, "lr": lr})
            if self.verbose:
                tqdm.write(f"fine-tuning epoch {epoch}: train_loss {history[-1]['train_loss']:.4f}, "
                           f"valid_loss {valid_loss:.4f}, valid_accuracy {accuracy:.4f}, lr {lr:.3g}")
            if self._score(accuracy, valid_loss) > best[0]:
                best, bad_epochs = (self._score(accuracy, valid_loss), epoch,
                                    copy.deepcopy(self.module_.state_dict())), 0
                continue
            bad_epochs += 1
            if bad_epochs < self.patience:
                continue
            if halvings == self.max_lr_halvings:
                break
            # The plateau schedule of the official code: back to the best weights, half the step.
            halvings, bad_epochs = halvings + 1, 0
            self.module_.load_state_dict(best[2])
            for group in optimizer.param_groups:
                group["lr"] /= 2
        self.module_.load_state_dict(best[2])
        return history, best[1]

    @torch.no_grad()
    def _validate(self, corpus, targets, device):
        """(accuracy, mean cross-entropy) on held-out labels."""
        logits = torch.as_tensor(self._logits(corpus, device))
        labels = torch.as_tensor(targets)
        return (float((logits.argmax(1) == labels).float().mean()),
                float(F.cross_entropy(logits, labels)))

    def _logits(self, corpus, device):
        return self._run(corpus, device, self.module_, len(self.classes_))

    def _features(self, corpus, device):
        return self._run(corpus, device, self.module_.representation, self.module_.head.in_features)

    @torch.no_grad()
    def _run(self, corpus, device, function, width):
        """``function(tokens, lengths)`` over the corpus in eval mode: array (n_texts, width)."""
        self.module_.eval()
        out = np.zeros((len(corpus), width), dtype=np.float32)
        for indices in bucket_batches(corpus.lengths, ENCODE_BATCH_SIZE, shuffle=False):
            tokens, lengths = (t.to(device) for t in collate(corpus, indices))
            with autocast_context(device, self.precision):
                out[indices] = function(tokens, lengths).float().cpu().numpy()
        return out

    def save(self, path):
        """Write the model to directory ``path``: config.json, the fine-tuned weights
        (safetensors) and the BNVAE it started from in ``path/vae``."""
        from .persistence import save_fine_tuned

        save_fine_tuned(self, path)

    @classmethod
    def load(cls, path):
        """Load what :meth:`save` wrote (no code is executed from the files)."""
        from .persistence import load_fine_tuned

        return load_fine_tuned(path, expected=cls)

    def transform(self, X):
        """The fine-tuned features: posterior means (n_texts, latent_dim), or the LSTM's
        last state (n_texts, hidden_dim) with ``features="hidden"``."""
        check_is_fitted(self, "module_")
        return check_finite_means(self._features(self.vae.encode(X), resolve_device(self.device)))

    def decision_function(self, X):
        """Class logits: (n_texts,) for two classes (positive class minus negative), else (n_texts, n_classes)."""
        check_is_fitted(self, "module_")
        logits = self._logits(self.vae.encode(X), resolve_device(self.device))
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X):
        check_is_fitted(self, "module_")
        logits = torch.as_tensor(self._logits(self.vae.encode(X), resolve_device(self.device)))
        return torch.softmax(logits, 1).numpy()

    def predict(self, X):
        check_is_fitted(self, "module_")
        logits = self._logits(self.vae.encode(X), resolve_device(self.device))
        return self.classes_[logits.argmax(1)]


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
                         f"{n_valid} for early stopping; lower validation_fraction or add labels.")
    train_rows, valid_rows = train_test_split(rows, test_size=n_valid, stratify=targets,
                                              random_state=seed)
    return np.sort(train_rows), np.sort(valid_rows)
