"""Resumed Optuna studies: no replayed trials, and a fault drill (kill -9 in the middle of
a trial, rerun at once with the default heartbeat: the killed trial is FAIL and the study
ends with the requested number of distinct complete trials)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import make_semi_labeled

optuna = pytest.importorskip("optuna")

from ssl_textvae.tuning.resume import resumed_sampler_seed  # noqa: E402
from ssl_textvae.tuning import tune  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
FAST = {f"vae__{k}": v for k, v in dict(embed_dim=8, hidden_dim=16, latent_dim=4, max_epochs=1, batch_size=16).items()}
# A continuous range: distinct draws never coincide by chance, only by a replayed seed.
SPACE = {"vae__gamma": (0.2, 1.2)}
COMPLETE, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.RUNNING)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small():
    return make_semi_labeled(120, 40, seed=1)


def test_resumed_study_does_not_repeat_its_first_trials(small, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(storage=storage, study_name="resume", search_space=SPACE, fixed_params=FAST,
                  random_state=0, verbose=0)
    first = tune(*small, n_trials=3, **kwargs)
    first_gammas = [t.params["vae__gamma"] for t in first.trials]
    study = tune(*small, n_trials=6, **kwargs)   # n_trials is the total the study reaches
    assert [t.state for t in study.trials] == [COMPLETE] * 6
    assert [t.params["vae__gamma"] for t in study.trials[:3]] == first_gammas
    new_gammas = [t.params["vae__gamma"] for t in study.trials[3:]]
    assert not set(new_gammas) & set(first_gammas)
    assert len(set(new_gammas)) == 3


def test_a_fresh_study_keeps_its_seed():
    assert resumed_sampler_seed(7, 0) == 7
    assert resumed_sampler_seed(7, 3) == resumed_sampler_seed(7, 3) != resumed_sampler_seed(7, 4)
    assert 0 <= resumed_sampler_seed(2**31 - 1, 10**6) < 2**31


WORKER = textwrap.dedent("""
    import sys
    from conftest import make_semi_labeled
    from ssl_textvae.tuning import tune
    storage = sys.argv[1]
    texts, y = make_semi_labeled(120, 40, seed=1)
    tune(texts, y, n_trials=3, storage=storage, study_name="drill", search_space={"vae__gamma": (0.2, 1.2)},
         fixed_params=dict(vae__embed_dim=8, vae__hidden_dim=16, vae__latent_dim=4, vae__batch_size=16,
                           vae__max_epochs=500, vae__lr_patience=500), random_state=0, verbose=0)
""")


def test_fault_drill_kill_during_a_trial_then_rerun_at_once(small, tmp_path):
    storage = f"sqlite:///{tmp_path / 'drill.db'}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), OMP_NUM_THREADS="1")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, storage], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if worker.poll() is not None:
                pytest.fail(f"the worker ended before it was killed:\n{worker.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the worker never started a trial")
            try:
                trials = optuna.load_study(study_name="drill", storage=storage).trials
                if trials and trials[0].state == RUNNING and "vae__gamma" in trials[0].params:
                    break
            except Exception:   # the study is not created yet, or its file is locked
                pass
            time.sleep(0.1)
        worker.send_signal(signal.SIGKILL)   # mid-trial: the first trial runs 500 epochs
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed = optuna.load_study(study_name="drill", storage=storage).trials[0]
    assert killed.state == RUNNING
    # Rerun at once, with the default 30 s heartbeat: no waiting for a grace period.
    start = time.monotonic()
    study = tune(*small, n_trials=3, storage=storage, study_name="drill", search_space=SPACE,
                 fixed_params=FAST, random_state=0, verbose=0)
    assert time.monotonic() - start < 60
    assert study.trials[0].state == FAIL
    complete = [t for t in study.trials if t.state == COMPLETE]
    assert len(complete) == 3
    gammas = [t.params["vae__gamma"] for t in complete]
    assert len(set(gammas)) == 3
    assert killed.params["vae__gamma"] in gammas   # the killed trial's parameters were tried again
    assert not [t for t in study.trials if t.state == RUNNING]
