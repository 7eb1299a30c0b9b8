"""The study: :func:`tune` runs it (resuming a stored one), :func:`build_classifier`
turns its best trial into an unfitted classifier."""

from __future__ import annotations

import contextlib
import json
import numbers
import time
import warnings

from sklearn.base import clone
from tqdm.auto import tqdm

from ..estimators._classifier_base import default_head
from ..estimators.bnvae import BNVAE
from ..estimators.classifier import BNVAEClassifier
from ._optuna import import_optuna
from .objective import (HEAD_PREFIX, TuningObjective, _check_search_space, _derive_seed,
                        default_search_space)
from .resume import fail_trials_of_dead_workers, resumed_sampler_seed
from .storage import make_storage


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
        Stop starting trials after this many seconds; a trial still pretraining
        then is pruned after its current epoch. At least one of ``n_trials`` and
        ``timeout`` is required.
    storage : str, optuna storage or None, default=None
        None keeps the study in memory; an RDB URL (``sqlite:///study.db``,
        ``postgresql+psycopg2://...``) resumes and can be shared by workers. An unknown
        scheme or a SQLite file in a missing folder is a ``ValueError`` before anything runs.
    study_name : str or None, default=None
        Name of the study in ``storage``; an existing study of that name is resumed.
        A study keeps the search space it was created with (in its user attrs): a
        call with another one is a ``ValueError`` before any trial (Optuna cannot
        change the space of a study); use a new study name.
    search_space : dict or None, default=None
        Parameter name -> Optuna distribution, list of choices or ``(low, high)``.
        Names are ``BNVAEClassifier`` parameters: ``vae__<BNVAE parameter>``,
        ``estimator__<head parameter>`` or ``word_weight`` (word features beside the
        means, :mod:`ssl_textvae.estimators.features`). Every ``vae__`` choice (or both ends of a
        range) must meet the BNVAE parameter's constraint: a ``ValueError`` before the
        first trial otherwise. None means :func:`default_search_space`:
        ``vae__gamma`` on [0.1, 1.5] in steps of 0.1 and ``vae__latent_dim`` in
        {8, 16, 32, 64}.
    fixed_params : dict or None, default=None
        Other parameters held fixed, named likewise, such as ``vae__max_epochs``,
        ``vae__embed_dim`` or ``vae__hidden_dim``.
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
        ``study.best_params`` are named as ``BNVAEClassifier.set_params`` names them
        (``vae__gamma``, ``estimator__C``); :func:`build_classifier` sets them, with
        ``fixed_params``, on an unfitted ``BNVAEClassifier(vae=BNVAE(...))``.
    """
    optuna = import_optuna()
    if n_trials is None and timeout is None:
        raise ValueError("Pass n_trials, timeout or both; otherwise the study would never stop.")
    if n_trials is not None and (not isinstance(n_trials, numbers.Integral) or n_trials < 1):
        raise ValueError(f"n_trials must be a positive int or None, got {n_trials!r}.")
    if timeout is not None and (not isinstance(timeout, numbers.Real) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}.")
    # Checked before the study exists: a bad value would fail every trial inside Optuna.
    space = _check_search_space(default_search_space() if search_space is None else search_space)
    storage = make_storage(storage, heartbeat_interval)
    seed = _derive_seed(random_state)
    with warnings_only(optuna):   # not Optuna's "A new study created" line
        study = optuna.create_study(
            storage=storage, study_name=study_name, direction="maximize", load_if_exists=True,
            sampler=sampler or optuna.samplers.TPESampler(seed=seed),
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1))
    _keep_search_space(study, space)
    stored = study.user_attrs.get("random_state")
    if stored is None:
        study.set_user_attr("random_state", seed)
    elif random_state is None:
        seed = int(stored)   # a resumed study keeps its seed, so its cached VAEs stay valid
    elif stored != seed:
        warnings.warn(f"Study {study.study_name!r} was started with random_state {stored}; this "
                      f"call uses {seed}, so its VAEs are pretrained with another seed.", UserWarning)
    objective = TuningObjective(texts, y, space, fixed_params, estimator, unlabeled,
                                cv_splits, cv_repeats, seed, model_dir, verbose)
    if timeout is not None:
        objective.deadline = time.monotonic() + timeout
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

    try:
        with warnings_only(optuna):   # our line per trial replaces Optuna's
            study.optimize(objective, timeout=timeout, catch=(Exception,), callbacks=[after_trial],
                           gc_after_trial=True)
    finally:
        progress.close()
    if len(failures) >= max_failures:
        warnings.warn(f"Stopped after {len(failures)} failed trials ({failures}); their errors "
                      "were logged by Optuna.", UserWarning)
    if verbose:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if complete:
            best = study.best_trial
            tqdm.write(f"Best trial {best.number}: accuracy {best.value:.4f} with {best.params}")
    return study


def _keep_search_space(study, space):
    """Store ``space`` in a new study's user attrs; refuse another one for a stored study
    (one stored without it, by an older version, is compared with its trials' spaces)."""
    distributions = import_optuna().distributions
    stored = study.user_attrs.get("search_space")
    if stored is not None:
        stored = {name: distributions.json_to_distribution(value) for name, value in stored.items()}
    else:
        seen = {}
        for trial in study.get_trials(deepcopy=False):
            seen.update(trial.distributions)
        if seen and any(seen.get(name, value) != value for name, value in space.items()):
            stored = seen
        else:
            study.set_user_attr("search_space", {name: distributions.distribution_to_json(value)
                                                 for name, value in space.items()})
            return
    if stored != space:
        changed = sorted(name for name in set(stored) | set(space) if stored.get(name) != space.get(name))
        raise ValueError(f"Study {study.study_name!r} was created with another search space "
                         f"({', '.join(f'{name}: {stored.get(name)}' for name in changed)}); this call "
                         f"asks for {', '.join(f'{name}: {space.get(name)}' for name in changed)}. "
                         "Optuna cannot change a study's space: use a new study name "
                         "(--study-name), or the same space to resume it.")


@contextlib.contextmanager
def warnings_only(optuna):
    """Optuna's log at WARNING while inside (its INFO lines off; failed trials still
    show), the previous level restored after."""
    logger = optuna.logging.get_logger("optuna")
    level = logger.level
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


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
    (``BNVAEClassifier.set_params`` names: ``vae__gamma``, ``estimator__C``), its VAE
    seeded with the study's ``random_state``; ``overrides`` (same names, or
    ``estimator=``) win. A head parameter without an ``estimator`` goes to a
    ``LogisticRegression(max_iter=1000)`` head."""
    params = {**study.user_attrs.get("fixed_params", {}), **study.best_params, **overrides}
    estimator = params.pop("estimator", None)
    if estimator is None and any(name.startswith(HEAD_PREFIX) for name in params):
        estimator = default_head()
    classifier = BNVAEClassifier(vae=BNVAE(random_state=study.user_attrs.get("random_state")),
                                 estimator=clone(estimator) if estimator is not None else None)
    return classifier.set_params(**params)
