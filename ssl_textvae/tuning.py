"""Optuna tuning of ``gamma`` and ``latent_dim`` (and optionally the head) per data set.

One call, :func:`tune`, runs an Optuna study whose objective is the accuracy of
the head under repeated stratified cross-validation **on the labeled rows only**:

* the VAE is pretrained, without labels, on every text given (labeled and
  unlabeled rows plus ``unlabeled``), exactly as :class:`BNVAEClassifier` does;
* the head (``LogisticRegression`` by default) is then scored by
  ``RepeatedStratifiedKFold`` on the posterior means of the labeled rows.

No test set enters the study: pass only training texts. Cross-validation on the
labeled rows is used instead of a fixed validation split because with 100 labels
a single split of 20 texts moves by 5 points per text; repeating the folds
averages that noise away at the cost of a few extra fits of a linear head.

A pretrained VAE depends only on its parameters, its seed and the pretraining
texts, so trials that share them share one VAE: it is cached in memory and, with
``model_dir``, on disk (``BNVAE.save``), keyed by a hash of all three. After each
pretraining epoch the cross-validated head accuracy at the current weights is
reported to the trial, so a pruner (``MedianPruner`` by default) stops hopeless
trials early.

Storage: None keeps the study in memory; an RDB URL (``sqlite:///study.db``,
``postgresql+psycopg2://user@host/db``) keeps it in a database that resumes where
it stopped and that several processes or machines can work on at once. RDB
studies run a heartbeat: a trial whose worker was killed is marked failed when a
worker next starts a trial, and its parameters are tried again. A rerun on the
same host fails the trials of its dead worker processes at once, without waiting
for the heartbeat's grace period, and a resumed study's sampler is seeded from
the number of trials it holds, so it never replays the parameters of its first
trials.

Optuna is an optional dependency (``pip install 'ssl_textvae[tuning]'``) and is
imported only when a function of this module needs it.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import shutil
import tempfile
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from . import data as data_lib
from ._validation import check_classes, check_labels, check_texts
from ._study_resume import fail_trials_of_dead_workers, resumed_sampler_seed, worker_id
from .estimator import BNVAE, BNVAEClassifier, VAE_CONSTRAINTS

INSTALL_HINT = "pip install 'ssl_textvae[tuning]'"
DEFAULT_GAMMA_RANGE = (0.1, 1.5)
DEFAULT_LATENT_DIMS = (8, 16, 32, 64)
HEAD_PREFIX = "estimator__"
# BNVAE parameters that do not change the trained weights: left out of the cache key.
_NOT_IN_KEY = ("device", "verbose", "checkpoint_dir")
# BNVAE parameters that tune sets itself.
_RESERVED = ("random_state", "checkpoint_dir")


def _import_optuna():
    try:
        import optuna
    except ImportError as error:
        raise ImportError("ssl_textvae.tuning needs the optional dependency Optuna, which is not "
                          f"installed. Install the extra with: {INSTALL_HINT}") from error
    return optuna


def default_search_space(head=False, gamma_range=DEFAULT_GAMMA_RANGE,
                         latent_dims=DEFAULT_LATENT_DIMS):
    """The search space :func:`tune` uses when given none.

    Parameters
    ----------
    head : bool, default=False
        Also tune the inverse regularization ``C`` of the default
        ``LogisticRegression`` head, as ``estimator__C`` (log-uniform on [1e-2, 1e2]).
    gamma_range : (float, float), default=(0.1, 1.5)
        ``gamma`` is searched on this range in steps of 0.1; the step lets trials
        share pretrained VAEs and is finer than the accuracy differences it makes.
    latent_dims : sequence of int, default=(8, 16, 32, 64)

    Returns
    -------
    dict of str to optuna distribution
    """
    optuna = _import_optuna()
    low, high = (float(v) for v in gamma_range)
    if not 0 < low <= high:
        raise ValueError(f"gamma_range must be (low, high) with 0 < low <= high, got {gamma_range!r}.")
    space = {"gamma": optuna.distributions.FloatDistribution(low, high, step=0.1)
             if round((high - low) / 0.1, 6).is_integer()
             else optuna.distributions.FloatDistribution(low, high),
             "latent_dim": optuna.distributions.CategoricalDistribution(
                 [int(d) for d in latent_dims])}
    if head:
        space[HEAD_PREFIX + "C"] = optuna.distributions.FloatDistribution(1e-2, 1e2, log=True)
    return space


def _check_search_space(search_space):
    """Optuna distributions keyed by tunable names; lists are categorical choices and
    ``(low, high)`` tuples uniform ranges (float if either end is a float)."""
    optuna = _import_optuna()
    distributions = optuna.distributions
    if not isinstance(search_space, dict) or not search_space:
        raise TypeError(f"search_space must be a non-empty dict of parameter name to an Optuna "
                        f"distribution, list or (low, high) tuple; got {search_space!r}.")
    tunable = sorted(set(BNVAE().get_params()) - set(_RESERVED))
    space = {}
    for name, value in search_space.items():
        if name not in tunable and not (isinstance(name, str) and name.startswith(HEAD_PREFIX)):
            raise ValueError(f"Cannot tune {name!r}: expected a BNVAE parameter ({', '.join(tunable)}) "
                             f"or a head parameter written '{HEAD_PREFIX}<name>'.")
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
    return space


def _suggest(trial, name, distribution):
    optuna = _import_optuna()
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
        self.estimator = LogisticRegression(max_iter=1000) if estimator is None else estimator
        self.unlabeled = unlabeled
        self.cv = RepeatedStratifiedKFold(n_splits=min(cv_splits, smallest), n_repeats=cv_repeats,
                                          random_state=self.seed)
        self.model_dir = model_dir
        self.verbose = verbose
        source = (self.texts if unlabeled is None
                  else data_lib.ConcatTexts(self.texts, data_lib.iterate_texts(unlabeled)))
        self._pretraining_texts = source
        self.data_fingerprint = _text_fingerprint(source)
        self._memory = {}
        self.n_pretrained = 0
        self.n_reused = 0

    def _check_fixed_params(self, fixed_params, verbose):
        known = set(BNVAE().get_params())
        for name in fixed_params:
            if name in _RESERVED:
                raise ValueError(f"fixed_params may not set {name!r}: tune sets it (use random_state).")
            if name not in known and not name.startswith(HEAD_PREFIX):
                raise ValueError(f"Unknown fixed parameter {name!r}; expected BNVAE parameters "
                                 f"({', '.join(sorted(known))}) or '{HEAD_PREFIX}<name>'.")
            if name in self.search_space:
                raise ValueError(f"{name!r} is both in the search space and in fixed_params.")
        vae_params = {k: v for k, v in fixed_params.items() if not k.startswith(HEAD_PREFIX)}
        vae_params.setdefault("verbose", 1 if verbose > 1 else 0)
        # Fail here, not in every trial, when a fixed value is out of range.
        probe = BNVAE(**vae_params, random_state=self.seed)
        for name, constraint in VAE_CONSTRAINTS.items():
            if name in vae_params and getattr(probe, name) not in constraint:
                raise ValueError(f"fixed_params[{name!r}] must be {constraint}. Got "
                                 f"{vae_params[name]!r} instead.")
        return vae_params

    def __call__(self, trial):
        optuna = _import_optuna()
        # First thing: a rerun on this host fails the trial at once if this process dies.
        trial.set_user_attr("worker", worker_id())
        params = {name: _suggest(trial, name, dist) for name, dist in self.search_space.items()}
        all_params = {**self.fixed_params, **params}
        vae_params = {**self._vae_fixed, "random_state": self.seed,
                      **{k: v for k, v in params.items() if not k.startswith(HEAD_PREFIX)}}
        head = clone(self.estimator).set_params(
            **{k[len(HEAD_PREFIX):]: v for k, v in all_params.items() if k.startswith(HEAD_PREFIX)})

        def report(vae, record):
            score = self.cv_accuracy(vae, head).mean()
            trial.report(float(score), int(record["epoch"]))
            # After the last epoch the trial is as good as done: no point in pruning it.
            if record["epoch"] < vae.max_epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']} at cross-validated "
                                         f"accuracy {score:.4f}")

        vae, key = self.pretrained_vae(vae_params, epoch_callback=report)
        scores = self.cv_accuracy(vae, head)
        trial.set_user_attr("vae_key", key)
        trial.set_user_attr("cv_accuracy_std", float(scores.std()))
        if getattr(vae, "history_", None):
            trial.set_user_attr("valid_loss", float(vae.history_[-1]["valid_loss"]))
        return float(scores.mean())

    def cv_accuracy(self, vae, head):
        """Accuracy of ``head`` in each fold of the repeated cross-validation, on the
        posterior means of the labeled texts under ``vae``."""
        features = vae.transform(self.labeled_texts)   # (n_labeled, latent_dim)
        # Transforming once and cross-validating the head on the features gives the
        # same folds and scores as cross-validating BNVAEClassifier(vae=vae): the
        # means of a text do not depend on the other texts (batch norm in eval mode).
        return cross_val_score(head, features, self.labels, cv=self.cv, scoring="accuracy")

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
                _save_atomically(vae, path)
        self._memory[key] = vae
        return vae, key


def _save_atomically(vae, path):
    """Save into a temporary sibling and rename it, so a killed worker leaves no
    half-written model and two workers that pretrained the same VAE do not clash."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".partial-", dir=parent)
    try:
        vae.save(temporary)
        try:
            os.rename(temporary, path)
        except OSError:
            if not os.path.isfile(os.path.join(path, "config.json")):
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def make_storage(storage, heartbeat_interval=30):
    """An Optuna storage for ``storage``: None (in memory), an RDB URL (with a
    heartbeat that fails trials of killed workers and retries their parameters
    once), or a storage object, returned as is."""
    optuna = _import_optuna()
    if storage is None or not isinstance(storage, str):
        return storage
    if "://" not in storage:
        raise ValueError(f"storage must be an RDB URL such as 'sqlite:///study.db' or "
                         f"'postgresql+psycopg2://user@host/db', got {storage!r}.")
    engine_kwargs = {"pool_pre_ping": True}
    if storage.startswith("sqlite"):
        # Several worker processes on one SQLite file wait for its lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():   # heartbeats are "experimental" in Optuna's words
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):   # Optuna >= 4.9
            retry = {"heartbeat_stale_trial_callback":
                     optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
        else:
            retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
        for attempt in range(3):
            try:
                return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=heartbeat_interval,
                                                  grace_period=2 * heartbeat_interval, **retry)
            except Exception as error:
                # Workers that start together on a new database race to create its
                # tables; the loser gets an integrity error and simply tries again.
                if attempt == 2 or not type(error).__module__.startswith("sqlalchemy"):
                    raise
                time.sleep(1.0 + attempt)


def tune(texts, y, n_trials=None, timeout=None, storage=None, study_name=None, search_space=None,
         fixed_params=None, estimator=None, unlabeled=None, cv_splits=5, cv_repeats=3,
         random_state=None, model_dir=None, sampler=None, pruner=None, heartbeat_interval=30,
         max_failures=3, verbose=1):
    """Tune ``gamma`` and ``latent_dim`` (or ``search_space``) with Optuna.

    Parameters
    ----------
    texts : list of str
        Training texts only (never the test set).
    y : array-like of shape (n_texts,)
        Labels; -1 (or "-1") marks unlabeled texts, which are used for pretraining only.
    n_trials : int or None, default=None
        Number of finished (complete or pruned) trials the study should hold in
        total, not the number of new trials: ``tune(n_trials=3)`` then
        ``tune(n_trials=6)`` on the same storage runs 3 new trials, with other
        parameters than the first 3 (the sampler's seed is drawn from
        ``random_state`` and the number of trials already in the study). Failed
        trials do not count. Several workers may overshoot by one trial each.
    timeout : float or None, default=None
        Stop starting trials after this many seconds. At least one of
        ``n_trials`` and ``timeout`` is required.
    storage : str, optuna storage or None, default=None
        None keeps the study in memory; an RDB URL (``sqlite:///study.db``,
        ``postgresql+psycopg2://...``) resumes and can be shared by workers.
    study_name : str or None, default=None
        Name of the study in ``storage``; an existing study of that name is resumed.
    search_space : dict or None, default=None
        Parameter name -> Optuna distribution, list of choices or ``(low, high)``.
        Names are ``BNVAE`` parameters or head parameters ``estimator__<name>``.
        None means :func:`default_search_space`: ``gamma`` on [0.1, 1.5] in steps
        of 0.1 and ``latent_dim`` in {8, 16, 32, 64}.
    fixed_params : dict or None, default=None
        Other ``BNVAE`` (or ``estimator__``) parameters held fixed, such as
        ``max_epochs``, ``embed_dim`` or ``hidden_dim``.
    estimator : classifier or None, default=None
        The head; None means ``LogisticRegression(max_iter=1000)``.
    unlabeled : re-iterable of str or None, default=None
        More pretraining texts (a list, ``TextFile`` or ``datasets.Dataset``).
    cv_splits, cv_repeats : int, default=5, 3
        ``RepeatedStratifiedKFold`` on the labeled rows (``cv_splits`` is lowered to
        the size of the smallest class when that is smaller).
    random_state : int, RandomState instance or None, default=None
        One integer derived from it seeds the sampler, the pretraining of every
        VAE and the folds. The same value on a fresh storage gives the same trials.
    model_dir : str or None, default=None
        Keep pretrained VAEs there (one directory per cache key) and reuse them
        across calls and workers; None keeps them in memory for this call only.
    sampler, pruner : optuna sampler and pruner, default=None
        None means ``TPESampler(seed=...)`` and ``MedianPruner(n_startup_trials=4,
        n_warmup_steps=1)`` on the accuracy reported after each epoch.
    heartbeat_interval : int, default=30
        Seconds between heartbeats of a running trial in an RDB storage; a trial
        silent for twice as long is marked failed (and retried once). A trial whose
        worker ran on this host and no longer exists (killed) is marked failed
        (and retried) as soon as ``tune`` starts, without waiting.
    max_failures : int, default=3
        This call stops after that many of its trials failed (the errors are logged).
    verbose : int, default=1
        0 is silent; 1 shows a progress bar and one line per trial; 2 also shows
        pretraining progress.

    Returns
    -------
    optuna.Study
        ``study.best_params`` can be passed to ``BNVAEClassifier`` (together with
        ``fixed_params``); :func:`build_classifier` does both.
    """
    optuna = _import_optuna()
    if n_trials is None and timeout is None:
        raise ValueError("Pass n_trials, timeout or both; otherwise the study would never stop.")
    if n_trials is not None and (not isinstance(n_trials, numbers.Integral) or n_trials < 1):
        raise ValueError(f"n_trials must be a positive int or None, got {n_trials!r}.")
    if timeout is not None and (not isinstance(timeout, numbers.Real) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}.")
    storage = make_storage(storage, heartbeat_interval)
    seed = _derive_seed(random_state)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction="maximize", load_if_exists=True,
        sampler=sampler or optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1))
    stored = study.user_attrs.get("random_state")
    if stored is None:
        study.set_user_attr("random_state", seed)
    elif random_state is None:
        seed = int(stored)   # a resumed study keeps its seed, so its cached VAEs stay valid
    elif stored != seed:
        warnings.warn(f"Study {study.study_name!r} was started with random_state {stored}; this "
                      f"call uses {seed}, so its VAEs are pretrained with another seed.", UserWarning)
    objective = TuningObjective(texts, y, search_space, fixed_params, estimator, unlabeled,
                                cv_splits, cv_repeats, seed, model_dir, verbose)
    if "fixed_params" not in study.user_attrs:
        study.set_user_attr("fixed_params", json.loads(json.dumps(objective.fixed_params,
                                                                  default=repr)))
    if sampler is None:   # a resumed study must not replay its first trials' parameters
        study.sampler = optuna.samplers.TPESampler(seed=resumed_sampler_seed(seed, len(study.trials)))
    dead = fail_trials_of_dead_workers(study) if isinstance(storage, optuna.storages.RDBStorage) else []
    if dead and verbose:
        tqdm.write(f"Marked trials {dead} failed: their worker process on this host is gone.")

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    n_done = len(study.get_trials(deepcopy=False, states=finished))
    if n_trials is not None and n_done >= n_trials:
        if verbose:
            tqdm.write(f"Study {study.study_name!r} already holds {n_done} finished trials.")
        return study
    progress = tqdm(total=n_trials, initial=n_done, desc="trials", unit="trial",
                    disable=not verbose)
    failures = []

    def after_trial(study, trial):
        if trial.state == optuna.trial.TrialState.FAIL:
            failures.append(trial.number)
        if verbose:
            progress.update(1 if trial.state in finished else 0)
            tqdm.write(_describe_trial(study, trial))
        done = len(study.get_trials(deepcopy=False, states=finished))
        if (n_trials is not None and done >= n_trials) or len(failures) >= max_failures:
            study.stop()

    logger = optuna.logging.get_logger("optuna")
    level = logger.level
    # Our line per trial replaces Optuna's; its warnings (failed trials) still show.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(objective, timeout=timeout, catch=(Exception,), callbacks=[after_trial],
                       gc_after_trial=True)
    finally:
        progress.close()
        logger.setLevel(level)
    if len(failures) >= max_failures:
        warnings.warn(f"Stopped after {len(failures)} failed trials ({failures}); their errors "
                      "were logged by Optuna.", UserWarning)
    if verbose:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if complete:
            best = study.best_trial
            tqdm.write(f"Best trial {best.number}: accuracy {best.value:.4f} with {best.params}")
    return study


def _describe_trial(study, trial):
    value = "" if trial.value is None else f" accuracy {trial.value:.4f}"
    params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    line = f"trial {trial.number} {trial.state.name.lower()}:{value} ({params})"
    try:
        line += f"; best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        pass   # no complete trial yet
    return line


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def build_classifier(study, **overrides):
    """An unfitted :class:`BNVAEClassifier` with the study's fixed and best parameters
    (head parameters go to a ``LogisticRegression`` head); ``overrides`` win."""
    params = {**study.user_attrs.get("fixed_params", {}), **study.best_params, **overrides}
    head = {k[len(HEAD_PREFIX):]: params.pop(k) for k in list(params) if k.startswith(HEAD_PREFIX)}
    if head and params.get("estimator") is None:
        params["estimator"] = LogisticRegression(max_iter=1000, **head)
    elif head:
        params["estimator"] = clone(params["estimator"]).set_params(**head)
    return BNVAEClassifier(random_state=study.user_attrs.get("random_state"), **params)


def plot_trials(study, path):
    """Save a PNG of the trials: accuracy against ``gamma``, one color and marker per
    ``latent_dim`` (complete trials filled, pruned ones hollow at their last report)."""
    optuna = _import_optuna()
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"plot_trials needs matplotlib: {INSTALL_HINT}") from error
    states = optuna.trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
              if "gamma" in t.params and "latent_dim" in t.params]
    if not trials:
        raise ValueError("The study holds no complete or pruned trial with gamma and latent_dim "
                         "to plot.")
    figure = Figure(figsize=(9, 4), constrained_layout=True)
    FigureCanvasAgg(figure)
    by_gamma, by_latent = figure.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    latent_dims = sorted({t.params["latent_dim"] for t in trials})
    markers = "osD^v<>ph*"
    colors = [f"C{i % 10}" for i in range(len(latent_dims))]
    for index, latent_dim in enumerate(latent_dims):
        for state, filled in ((states.COMPLETE, True), (states.PRUNED, False)):
            group = [t for t in trials if t.params["latent_dim"] == latent_dim and t.state == state
                     and (t.value is not None or t.intermediate_values)]
            values = [t.value if t.value is not None else
                      t.intermediate_values[max(t.intermediate_values)] for t in group]
            if not group:
                continue
            style = dict(marker=markers[index % len(markers)], s=45,
                         facecolors=colors[index] if filled else "none", edgecolors=colors[index])
            label = f"latent_dim {latent_dim}" + ("" if filled else " (pruned)")
            by_gamma.scatter([t.params["gamma"] for t in group], values, label=label, **style)
            by_latent.scatter([index] * len(group), values, **style)
    best = study.best_trial if any(t.state == states.COMPLETE for t in trials) else None
    if best is not None:
        by_gamma.scatter([best.params["gamma"]], [best.value], s=180, facecolors="none",
                         edgecolors="black", linewidths=1.5, label=f"best (trial {best.number})")
    by_gamma.set_xlabel("gamma (scale of the batch norm on the posterior means)")
    by_gamma.set_ylabel("cross-validated accuracy (labeled rows)")
    by_gamma.legend(fontsize=8)
    by_gamma.grid(alpha=0.3)
    by_latent.set_xticks(range(len(latent_dims)), [str(d) for d in latent_dims])
    by_latent.set_xlabel("latent_dim")
    by_latent.grid(alpha=0.3)
    figure.suptitle(f"Optuna study {study.study_name!r}: {len(trials)} trials")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def save_results(study, out_dir):
    """Write ``best_params.json``, ``trials.json`` and ``trials.png`` to ``out_dir``;
    return the paths written."""
    optuna = _import_optuna()
    states = optuna.trial.TrialState
    os.makedirs(out_dir, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING)}
    if counts["complete"] == 0:
        raise ValueError(f"Study {study.study_name!r} has no complete trial yet; nothing to save.")
    best = study.best_trial
    summary = {"study_name": study.study_name, "best_params": best.params,
               "best_value": best.value, "best_trial": best.number,
               "best_cv_accuracy_std": best.user_attrs.get("cv_accuracy_std"),
               "fixed_params": study.user_attrs.get("fixed_params", {}),
               "random_state": study.user_attrs.get("random_state"), "n_trials": counts,
               "objective": "accuracy of the head under repeated stratified cross-validation "
                            "on the labeled training rows"}
    paths = {"best_params": os.path.join(out_dir, "best_params.json"),
             "trials": os.path.join(out_dir, "trials.json"),
             "plot": os.path.join(out_dir, "trials.png")}
    with open(paths["best_params"], "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
             "seconds": t.duration.total_seconds() if t.duration else None,
             "user_attrs": t.user_attrs} for t in trials]
    with open(paths["trials"], "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=2, default=repr)
    try:
        plot_trials(study, paths["plot"])
    except ValueError as error:   # a custom space without gamma or latent_dim
        warnings.warn(f"No trial plot: {error}", UserWarning)
        del paths["plot"]
    return paths

