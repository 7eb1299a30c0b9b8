"""Resuming an Optuna study where it stopped: a sampler that does not replay the
trials of earlier calls, and trials of killed workers failed at once.

Part of :mod:`ssl_textvae.tuning` (Optuna is optional); kept apart so the
rules of a resumed study are in one place.
"""

from __future__ import annotations

import copy
import os
import socket

import numpy as np


def worker_id() -> str:
    """``host:pid`` of this process, recorded on each trial when it starts."""
    return f"{socket.gethostname()}:{os.getpid()}"


def resumed_sampler_seed(seed: int, n_trials_in_study: int) -> int:
    """The sampler's seed for a call that finds ``n_trials_in_study`` trials already in
    the study: ``seed`` itself on a fresh study (the same trials as before), otherwise
    a seed drawn from (``seed``, trial count). A seeded sampler started again with the
    same seed would replay its random draws, and the resumed study would repeat the
    parameters of its first trials; this stays reproducible for a given study state."""
    if n_trials_in_study == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(n_trials_in_study)]).generate_state(1)[0]
               % 2**31)


def fail_trials_of_dead_workers(study) -> list:
    """Mark FAIL every RUNNING trial whose worker ran on this host and is no longer
    alive (killed, or its machine rebooted), and hand it to the storage's stale-trial
    callback (which queues its parameters again), as Optuna's heartbeat would after
    its grace period. Returns the numbers of the trials failed.

    A trial started on another host, or whose process still exists, is left to the
    heartbeat. Process ids are reused, so a dead worker whose id was taken again is
    also left to the heartbeat: never a live worker's trial failed by mistake.
    """
    from optuna.trial import TrialState

    storage = study._storage
    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or not pid.isdigit() or _process_exists(int(pid)):
            continue
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                failed.append(trial)
        except Exception:   # another worker failed it first
            continue
    callback = None
    for name in ("get_heartbeat_stale_trial_callback", "get_failed_trial_callback"):
        if callback is None and hasattr(storage, name):
            callback = getattr(storage, name)()
    for trial in failed:
        if callback is not None:
            callback(study, copy.deepcopy(storage.get_trial(trial._trial_id)))
    return [trial.number for trial in failed]


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True   # this process: a trial of another thread, or of an interrupted call
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        return True
    except OSError:
        return True   # cannot tell (e.g. signals unsupported): leave it to the heartbeat
    return True
