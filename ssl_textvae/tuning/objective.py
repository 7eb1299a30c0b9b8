"""The objective of a tuning study: cross-validated head accuracy on the posterior means
of a BNVAE pretrained per trial (and cached per parameters, seed and texts); the
search space and how a trial draws from it."""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import time

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.utils import check_random_state

from ..estimators._classifier_base import default_head
from ..estimators._vae_params import VAE_CONSTRAINTS
from ..estimators.bnvae import BNVAE
from ..estimators.features import check_word_weight, fit_scaler, fit_words, head_features
from .resume import worker_id
from ..text.inputs import ConcatTexts, check_classes, check_labels, check_texts, iterate_texts
from ._optuna import import_optuna
from .storage import save_atomically

DEFAULT_GAMMA_RANGE = (0.1, 1.5)
DEFAULT_LATENT_DIMS = (8, 16, 32, 64)
VAE_PREFIX, HEAD_PREFIX = "vae__", "estimator__"   # as BNVAEClassifier.set_params names them
WORD_WEIGHT = "word_weight"   # BNVAEClassifier's own parameter (ssl_textvae.estimators.features)
# BNVAE parameters that do not change the trained weights: left out of the cache key.
_NOT_IN_KEY = ("device", "verbose", "checkpoint_dir")
# BNVAE parameters that tune sets itself.
_RESERVED = ("random_state", "checkpoint_dir")


def default_search_space(head=False, gamma_range=DEFAULT_GAMMA_RANGE,
                         latent_dims=DEFAULT_LATENT_DIMS):
    """The search space :func:`tune` uses when given none.

    Parameters
    ----------
    head : bool, default=False
        Also tune the inverse regularization ``C`` of the default
        ``LogisticRegression`` head, as ``estimator__C`` (log-uniform on [1e-2, 1e2]).
    gamma_range : (float, float), default=(0.1, 1.5)
        ``vae__gamma`` is searched on this range in steps of 0.1; the step lets trials
        share pretrained VAEs and is finer than the accuracy differences it makes.
    latent_dims : sequence of int, default=(8, 16, 32, 64)
        The choices of ``vae__latent_dim``.

    Returns
    -------
    dict of str to optuna distribution
        Keyed by ``BNVAEClassifier`` parameter names (``vae__gamma``, ...).
    """
    optuna = import_optuna()
    low, high = (float(v) for v in gamma_range)
    if not 0 < low <= high:
        raise ValueError(f"gamma_range must be (low, high) with 0 < low <= high, got {gamma_range!r}.")
    space = {VAE_PREFIX + "gamma": optuna.distributions.FloatDistribution(low, high, step=0.1)
             if round((high - low) / 0.1, 6).is_integer()
             else optuna.distributions.FloatDistribution(low, high),
             VAE_PREFIX + "latent_dim": optuna.distributions.CategoricalDistribution(
                 [int(d) for d in latent_dims])}
    if head:
        space[HEAD_PREFIX + "C"] = optuna.distributions.FloatDistribution(1e-2, 1e2, log=True)
    return space


def _check_search_space(search_space):
    """Optuna distributions keyed by tunable names; lists are categorical choices and
    ``(low, high)`` tuples uniform ranges (float if either end is a float)."""
    optuna = import_optuna()
    distributions = optuna.distributions
    if not isinstance(search_space, dict) or not search_space:
        raise TypeError(f"search_space must be a non-empty dict of parameter name to an Optuna "
                        f"distribution, list or (low, high) tuple; got {search_space!r}.")
    space = {}
    for name, value in search_space.items():
        _check_name(name, "search_space")
        if isinstance(value, distributions.BaseDistribution):
            space[name] = value
        elif isinstance(value, list) and value:
            space[name] = distributions.CategoricalDistribution(value)
        elif (isinstance(value, tuple) and len(value) == 2
              and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
              and value[0] <= value[1]):
            if all(isinstance(v, numbers.Integral) for v in value):
                space[name] = distributions.IntDistribution(int(value[0]), int(value[1]))
            else:
                space[name] = distributions.FloatDistribution(float(value[0]), float(value[1]))
        else:
            raise TypeError(f"search_space[{name!r}] must be an Optuna distribution, a non-empty list "
                            f"of choices or a (low, high) tuple with low <= high; got {value!r}.")
        _check_values(name, space[name])
    return space


def _check_values(name, distribution):
    """Every choice, or both ends of a range, of a ``vae__`` parameter must meet its BNVAE
    constraint: a bad value would fail trial after trial inside Optuna."""
    constraint = VAE_CONSTRAINTS.get(name[len(VAE_PREFIX):]) if name.startswith(VAE_PREFIX) else None
    if constraint is None:
        return
    values = getattr(distribution, "choices", None)
    for value in (distribution.low, distribution.high) if values is None else values:
        if value not in constraint:
            raise ValueError(f"search_space[{name!r}] holds {value!r}, but {name} must be "
                             f"{constraint}. Change the search space (for example --latent-dims "
                             "or --gamma-range on the command line).")


def _check_name(name, where):
    """``name`` must be a ``BNVAEClassifier`` parameter that tuning may set: ``vae__<BNVAE
    parameter>`` or ``estimator__<head parameter>``."""
    tunable = sorted(set(BNVAE().get_params()) - set(_RESERVED))
    if isinstance(name, str) and (name.startswith(HEAD_PREFIX) or name == WORD_WEIGHT):
        return
    if isinstance(name, str) and name.startswith(VAE_PREFIX) and name[len(VAE_PREFIX):] in _RESERVED:
        raise ValueError(f"{where} may not set {name!r}: tune sets it (use random_state).")
    if isinstance(name, str) and name.startswith(VAE_PREFIX) and name[len(VAE_PREFIX):] in tunable:
        return
    hint = f" Write {VAE_PREFIX + name!r}, as BNVAEClassifier names it." if name in tunable else ""
    raise ValueError(f"Unknown parameter {name!r} in {where}: expected '{VAE_PREFIX}<name>' with a "
                     f"BNVAE parameter ({', '.join(tunable)}), '{HEAD_PREFIX}<name>' with a head "
                     f"parameter, or '{WORD_WEIGHT}'.{hint}")


def _suggest(trial, name, distribution):
    optuna = import_optuna()
    distributions = optuna.distributions
    if isinstance(distribution, distributions.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   step=distribution.step, log=distribution.log)
    if isinstance(distribution, distributions.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high,
                                 step=distribution.step, log=distribution.log)
    if isinstance(distribution, distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"Unsupported distribution for {name!r}: {type(distribution).__name__}.")


def _vae_kwargs(params):
    """The ``vae__`` entries of ``params`` as ``BNVAE`` keyword arguments."""
    return {k[len(VAE_PREFIX):]: v for k, v in params.items() if k.startswith(VAE_PREFIX)}


def _derive_seed(random_state):
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2 ** 31:
            raise ValueError(f"random_state must be in [0, 2**31), got {random_state}.")
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _text_fingerprint(texts):
    digest = hashlib.sha256()
    n_texts = 0
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
        n_texts += 1
    return f"{digest.hexdigest()}-{n_texts}"


class TuningObjective:
    """The objective of :func:`tune`: cross-validated head accuracy for one trial.

    Call it with an Optuna trial (``optuna.trial.FixedTrial`` for a single
    evaluation). Parameters are described in :func:`tune`.

    Attributes
    ----------
    n_pretrained : int
        VAEs pretrained by this object (cache misses).
    n_reused : int
        Trials that reused a cached VAE (in memory or in ``model_dir``).

    See Also
    --------
    ssl_textvae.tuning.tune : runs a study with this objective.

    Examples
    --------
    >>> import optuna                                                # doctest: +SKIP
    >>> from ssl_textvae.tuning import TuningObjective              # doctest: +SKIP
    >>> objective = TuningObjective(texts, y, fixed_params={"vae__max_epochs": 1})  # doctest: +SKIP
    >>> objective(optuna.trial.FixedTrial({"vae__gamma": 0.5, "vae__latent_dim": 8}))  # doctest: +SKIP
    0.87
    """

    def __init__(self, texts, y, search_space=None, fixed_params=None, estimator=None,
                 unlabeled=None, cv_splits=5, cv_repeats=3, random_state=0, model_dir=None,
                 verbose=0):
        self.texts = check_texts(texts)
        labels, unlabeled_rows = check_labels(y, len(self.texts))
        self.labeled_texts = [t for t, skip in zip(self.texts, unlabeled_rows) if not skip]
        self.labels = labels[~unlabeled_rows]
        check_classes(self.labels)
        smallest = int(np.unique(self.labels, return_counts=True)[1].min())
        if smallest < 2:
            raise ValueError(f"The smallest class has {smallest} labeled text; cross-validation "
                             "needs at least 2 per class.")
        for name, value, low in (("cv_splits", cv_splits, 2), ("cv_repeats", cv_repeats, 1)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        self.search_space = _check_search_space(
            default_search_space() if search_space is None else search_space)
        self.fixed_params = dict(fixed_params or {})
        self.seed = _derive_seed(random_state)
        self._vae_fixed = self._check_fixed_params(self.fixed_params, verbose)
        self.estimator = default_head() if estimator is None else estimator
        self.unlabeled = unlabeled
        self.cv = RepeatedStratifiedKFold(n_splits=min(cv_splits, smallest), n_repeats=cv_repeats,
                                          random_state=self.seed)
        self.model_dir = model_dir
        self.verbose = verbose
        source = (self.texts if unlabeled is None
                  else ConcatTexts(self.texts, iterate_texts(unlabeled)))
        self._pretraining_texts = source
        self.data_fingerprint = _text_fingerprint(source)
        self._memory = {}
        self._words = None
        # tune's wall-time budget (time.monotonic()): a trial still pretraining past it is
        # pruned after its current epoch, so a study overruns by one epoch, not one trial.
        self.deadline = None
        self.n_pretrained = 0
        self.n_reused = 0

    def _check_fixed_params(self, fixed_params, verbose):
        for name in fixed_params:
            _check_name(name, "fixed_params")
            if name in self.search_space:
                raise ValueError(f"{name!r} is both in the search space and in fixed_params.")
        vae_params = _vae_kwargs(fixed_params)
        vae_params.setdefault("verbose", 1 if verbose > 1 else 0)
        # Fail here, not in every trial, when a fixed value is out of range.
        probe = BNVAE(**vae_params, random_state=self.seed)
        for name, constraint in VAE_CONSTRAINTS.items():
            if name in vae_params and getattr(probe, name) not in constraint:
                raise ValueError(f"fixed_params[{VAE_PREFIX + name!r}] must be {constraint}. Got "
                                 f"{vae_params[name]!r} instead.")
        return vae_params

    def __call__(self, trial):
        optuna = import_optuna()
        # First thing: a rerun on this host fails the trial at once if this process dies.
        trial.set_user_attr("worker", worker_id())
        params = {name: _suggest(trial, name, dist) for name, dist in self.search_space.items()}
        all_params = {**self.fixed_params, **params}
        vae_params = {**self._vae_fixed, "random_state": self.seed, **_vae_kwargs(params)}
        head = clone(self.estimator).set_params(
            **{k[len(HEAD_PREFIX):]: v for k, v in all_params.items() if k.startswith(HEAD_PREFIX)})

        word_weight = check_word_weight(all_params.get(WORD_WEIGHT, 0.0))

        def report(vae, record):
            score = self.cv_accuracy(vae, head, word_weight).mean()
            trial.report(float(score), int(record["epoch"]))
            if self.deadline is not None and time.monotonic() > self.deadline and record["epoch"] < vae.max_epochs:
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}: the study's time "
                                         "budget is spent")
            # After the last epoch the trial is as good as done: no point in pruning it.
            if record["epoch"] < vae.max_epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']} at cross-validated "
                                         f"accuracy {score:.4f}")

        vae, key = self.pretrained_vae(vae_params, epoch_callback=report)
        scores = self.cv_accuracy(vae, head, word_weight)
        trial.set_user_attr("vae_key", key)
        trial.set_user_attr("cv_accuracy_std", float(scores.std()))
        if getattr(vae, "history_", None):
            trial.set_user_attr("valid_loss", float(vae.history_[-1]["valid_loss"]))
        return float(scores.mean())

    def cv_accuracy(self, vae, head, word_weight=0.0):
        """Accuracy of ``head`` in each fold of the repeated cross-validation, on the
        posterior means of the labeled texts under ``vae`` (and their word features
        with ``word_weight`` > 0, as ``BNVAEClassifier(word_weight=...)``)."""
        means = vae.transform(self.labeled_texts)   # (n_labeled, latent_dim)
        # Transforming once and cross-validating the head on the features gives the
        # same folds and scores as cross-validating BNVAEClassifier(vae=vae): the
        # means of a text do not depend on the other texts (batch norm in eval mode).
        # The word features are label-free (TF-IDF on every text, the scaler on the
        # labeled means), so they are fitted once, not per fold.
        if word_weight:
            if self._words is None:
                self._words = fit_words(self.texts)
            means = head_features(means, self.labeled_texts, fit_scaler(means), self._words,
                                  word_weight)
        return cross_val_score(head, means, self.labels, cv=self.cv, scoring="accuracy")

    def cache_key(self, vae_params):
        """Hash of the parameters that change a pretrained VAE, and of its texts."""
        params = BNVAE(**vae_params).get_params()
        described = {k: v for k, v in params.items() if k not in _NOT_IN_KEY}
        payload = json.dumps({"params": described, "data": self.data_fingerprint},
                             sort_keys=True, default=repr)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]

    def pretrained_vae(self, vae_params, epoch_callback=None):
        """The fitted BNVAE for ``vae_params`` and its cache key: from memory, from
        ``model_dir``, or pretrained now (and then stored in both)."""
        key = self.cache_key(vae_params)
        if key in self._memory:
            self.n_reused += 1
            return self._memory[key], key
        path = os.path.join(self.model_dir, key) if self.model_dir else None
        if path and os.path.isfile(os.path.join(path, "config.json")):
            vae = BNVAE.load(path)
            vae.set_params(device=vae_params.get("device", "auto"), verbose=vae_params["verbose"])
            self.n_reused += 1
        else:
            vae = BNVAE(**vae_params).fit(self._pretraining_texts, epoch_callback=epoch_callback)
            self.n_pretrained += 1
            if path:
                save_atomically(vae, path)
        self._memory[key] = vae
        return vae, key
