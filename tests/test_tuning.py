"""Optuna tuning: objective, cache, samplers, seeding, failures, pruning, kill and
resume, two workers on PostgreSQL, CLI, and the error without Optuna."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

from conftest import make_semi_labeled

optuna = pytest.importorskip("optuna")

from ssl_textvae import BNVAE  # noqa: E402
from ssl_textvae.tuning import (TuningObjective, build_classifier, plot_trials,  # noqa: E402
                                save_results, tune)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
# A model small enough that a trial takes about a second.
FAST_VAE = dict(embed_dim=8, hidden_dim=16, max_epochs=1, batch_size=16)
FAST = {f"vae__{name}": value for name, value in FAST_VAE.items()}   # as tune names them
SPACE = {"vae__gamma": [0.5, 1.0], "vae__latent_dim": [4, 8]}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Tiny models run faster on one thread, and far faster when other jobs share the cores.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small():
    return make_semi_labeled(160, 40, seed=1)


def _states(study):
    return [t.state for t in study.trials]


def test_fixed_trial_objective_scores_and_reuses_the_pretrained_vae(small, tmp_path):
    objective = TuningObjective(*small, search_space=SPACE, fixed_params=FAST, random_state=0,
                                model_dir=str(tmp_path))
    params = {"vae__gamma": 0.5, "vae__latent_dim": 4}
    first = objective(optuna.trial.FixedTrial(params))
    assert 0.0 <= first <= 1.0
    assert (objective.n_pretrained, objective.n_reused) == (1, 0)
    assert objective(optuna.trial.FixedTrial(params)) == first   # from memory
    # A new objective (another process, a resumed study) finds the VAE in model_dir.
    again = TuningObjective(*small, search_space=SPACE, fixed_params=FAST, random_state=0,
                            model_dir=str(tmp_path))
    assert again(optuna.trial.FixedTrial(params)) == pytest.approx(first)
    assert (again.n_pretrained, again.n_reused) == (0, 1)
    # Another gamma, another seed or other texts is another VAE.
    keys = {objective.cache_key({**FAST_VAE, "verbose": 0, "gamma": g, "latent_dim": 4,
                                             "random_state": s})
            for g, s in ((0.5, 0), (1.0, 0), (0.5, 1))}
    assert len(keys) == 3
    other_texts = TuningObjective(small[0][:-1], small[1][:-1], search_space=SPACE, fixed_params=FAST,
                                  random_state=0)
    assert other_texts.data_fingerprint != objective.data_fingerprint


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_three_trial_study_with_real_samplers(small, sampler):
    sampler = (optuna.samplers.TPESampler(seed=0) if sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=0))
    study = tune(*small, n_trials=3, search_space=SPACE, fixed_params=FAST, random_state=0,
                 sampler=sampler, verbose=0)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 3
    assert set(study.best_params) == {"vae__gamma", "vae__latent_dim"}
    for trial in complete:
        if "valid_loss" in trial.user_attrs:   # pretrained in this trial: one report per epoch
            assert list(trial.intermediate_values) == [1]
    classifier = build_classifier(study)
    assert classifier.get_params()["vae__gamma"] == study.best_params["vae__gamma"]
    assert classifier.get_params()["vae__hidden_dim"] == FAST["vae__hidden_dim"]


def test_same_random_state_gives_the_same_trials(small, tmp_path):
    space = {"vae__gamma": [0.25, 0.5, 0.75, 1.0], "vae__latent_dim": [4, 8]}
    runs = [tune(*small, n_trials=3, search_space=space, fixed_params=FAST, random_state=7,
                 model_dir=str(tmp_path), verbose=0) for _ in range(2)]
    first, second = ([t.params for t in study.trials] for study in runs)
    assert first == second
    assert len({p["vae__gamma"] for p in first}) > 1
    other = tune(*small, n_trials=3, search_space=space, fixed_params=FAST, random_state=8,
                 model_dir=str(tmp_path), verbose=0)
    assert [t.params for t in other.trials] != first


def test_a_failing_trial_is_marked_failed_and_the_study_goes_on(small):
    # C=-1 is refused by the head when it is fitted: that trial fails, the other one completes
    # (a vae__ value out of range is refused before the first trial instead).
    space = {"vae__gamma": [0.5], "vae__latent_dim": [4], "estimator__C": [-1.0, 1.0]}
    sampler = optuna.samplers.GridSampler(space, seed=0)
    study = tune(*small, n_trials=2, search_space=space, fixed_params=FAST, random_state=0,
                 sampler=sampler, verbose=0)
    states = {t.params["estimator__C"]: t.state for t in study.trials}
    assert states == {-1.0: optuna.trial.TrialState.FAIL, 1.0: optuna.trial.TrialState.COMPLETE}


def test_repeated_failures_stop_the_call(small):
    with pytest.warns(UserWarning, match="Stopped after 2 failed trials"):
        study = tune(*small, n_trials=5, search_space={"vae__latent_dim": [4], "estimator__C": [-1.0]},
                     fixed_params=FAST, random_state=0, max_failures=2, verbose=0)
    assert _states(study) == [optuna.trial.TrialState.FAIL] * 2


def test_hopeless_trials_are_pruned_after_an_epoch_and_not_cached(small, tmp_path):
    pruner = optuna.pruners.ThresholdPruner(lower=1.01)   # no accuracy reaches it
    study = tune(*small, n_trials=2, search_space=SPACE, fixed_params=dict(FAST, vae__max_epochs=2),
                 random_state=0, pruner=pruner, model_dir=str(tmp_path), verbose=0)
    assert _states(study) == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in study.trials)
    assert not [name for name in os.listdir(tmp_path) if not name.startswith(".")]


def test_epoch_callback_sees_each_epoch_and_leaves_training_unchanged(small):
    texts = small[0]
    params = dict(FAST_VAE, max_epochs=2, latent_dim=4, random_state=0, verbose=0)
    seen = []

    def callback(vae, record):
        seen.append((record["epoch"], vae.transform(texts[:5]).shape))

    with_callback = BNVAE(**params).fit(texts, epoch_callback=callback)
    plain = BNVAE(**params).fit(texts)
    assert seen == [(1, (5, 4)), (2, (5, 4))]
    np.testing.assert_array_equal(with_callback.transform(texts), plain.transform(texts))

    def stop(vae, record):
        raise KeyboardInterrupt("stop here")

    with pytest.raises(KeyboardInterrupt, match="stop here"):
        BNVAE(**params).fit(texts, epoch_callback=stop)


def test_results_are_written_as_json_and_png(small, tmp_path):
    study = tune(*small, n_trials=2, search_space=SPACE, fixed_params=FAST, random_state=0,
                 verbose=0)
    paths = save_results(study, str(tmp_path))
    summary = json.loads(open(paths["best_params"]).read())
    assert summary["best_params"] == study.best_params
    assert summary["fixed_params"] == FAST
    assert summary["n_trials"]["complete"] == 2
    with open(paths["plot"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_invalid_arguments_are_refused(small):
    with pytest.raises(ValueError, match="Pass n_trials, timeout or both"):
        tune(*small)
    with pytest.raises(ValueError, match="Unknown parameter 'colour' in search_space"):
        tune(*small, n_trials=1, search_space={"colour": [1, 2]})
    with pytest.raises(ValueError, match="Unknown parameter 'gamma'.* Write 'vae__gamma'"):
        tune(*small, n_trials=1, search_space={"gamma": [0.5]})
    with pytest.raises(TypeError, match=r"search_space\['vae__gamma'\] must be"):
        tune(*small, n_trials=1, search_space={"vae__gamma": "wide"})
    with pytest.raises(ValueError, match="may not set 'vae__random_state'"):
        tune(*small, n_trials=1, fixed_params={"vae__random_state": 3})
    with pytest.raises(ValueError, match="both in the search space and in fixed_params"):
        tune(*small, n_trials=1, fixed_params={"vae__gamma": 0.5})
    with pytest.raises(ValueError, match=r"fixed_params\['vae__max_epochs'\] must be"):
        tune(*small, n_trials=1, fixed_params={"vae__max_epochs": -1})
    with pytest.raises(ValueError, match="at least 2 per class"):
        tune(small[0][:3], [0, 1, 1], n_trials=1)
    with pytest.raises(ValueError, match="must be an RDB URL"):
        tune(*small, n_trials=1, storage="study.db")


def test_missing_optuna_names_the_extra(small, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)   # makes `import optuna` fail
    with pytest.raises(ImportError, match=r"pip install 'ssl_textvae\[tuning\]'"):
        tune(*small, n_trials=1)


# -- worker processes ---------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import os, sys, time
    from conftest import make_semi_labeled
    from ssl_textvae.tuning import tune
    storage, name, n_trials, max_epochs, barrier = sys.argv[1:6]
    texts, y = make_semi_labeled(160, 40, seed=1)
    if barrier != "-":   # wait until every worker is ready, so that all of them take trials
        open(f"{barrier}.{os.getpid()}", "w").close()
        while len([f for f in os.listdir(os.path.dirname(barrier))
                   if f.startswith(os.path.basename(barrier) + ".")]) < 2:
            time.sleep(0.05)
    tune(texts, y, n_trials=int(n_trials), storage=storage, study_name=name,
         search_space={"vae__gamma": [0.5, 1.0], "vae__latent_dim": [4, 8]}, random_state=0,
         fixed_params=dict(vae__embed_dim=8, vae__hidden_dim=16, vae__batch_size=16,
                           vae__max_epochs=int(max_epochs),
                           vae__lr_patience=int(max_epochs)),   # no early stop in a long trial
         heartbeat_interval=1, verbose=0)
""")


def _start_worker(storage, name, n_trials, max_epochs, barrier="-"):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", WORKER, storage, name, str(n_trials),
                             str(max_epochs), barrier], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_a_killed_worker_is_failed_and_the_rerun_resumes(small, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    worker = _start_worker(storage, "resume", n_trials=2, max_epochs=500)   # a long first trial
    try:
        deadline = time.monotonic() + 120
        while True:
            if worker.poll() is not None:
                pytest.fail(f"the worker ended before it was killed:\n{worker.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the worker never started a trial")
            try:
                study = optuna.load_study(study_name="resume", storage=storage)
                if optuna.trial.TrialState.RUNNING in _states(study):
                    break
            except Exception:   # the study is not created yet, or its file is locked
                pass
            time.sleep(0.2)
        time.sleep(1.5)   # well inside the trial, after a heartbeat or two
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed = optuna.load_study(study_name="resume", storage=storage).trials[0]
    assert killed.state == optuna.trial.TrialState.RUNNING   # nobody has noticed yet
    time.sleep(2.5)   # past the grace period (twice the heartbeat interval)
    study = tune(*small, n_trials=2, storage=storage, study_name="resume", search_space=SPACE,
                 fixed_params=FAST, random_state=0, heartbeat_interval=1, verbose=0)
    trials = study.trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    # The killed trial's parameters were tried again.
    assert killed.params in [t.params for t in complete]
    # Rerunning once more finds the study finished and starts nothing.
    again = tune(*small, n_trials=2, storage=storage, study_name="resume", search_space=SPACE,
                 fixed_params=FAST, random_state=0, heartbeat_interval=1, verbose=0)
    assert len(again.trials) == len(trials)


@pytest.fixture(scope="module")
def postgres_url():
    url = os.environ.get("SSL_TEXTVAE_POSTGRES_URL")
    if url:
        yield url
        return
    script = os.path.join(ROOT, ".ci", "start_postgres.sh")
    started = subprocess.run(
        ["bash", "-c", f'source "{script}" >/dev/null && echo "$SSL_TEXTVAE_POSTGRES_URL" && '
                       'echo "$SSL_TEXTVAE_POSTGRES_STOP"'],
        env=dict(os.environ, SSL_TEXTVAE_PG_NO_INSTALL="1"), capture_output=True, text=True)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or len(lines) != 2:
        # In CI the server is part of the job (.ci/run starts it): not finding one is a failure.
        skip_or_fail = pytest.fail if os.environ.get("CI") == "true" else pytest.skip
        skip_or_fail("no PostgreSQL server: SSL_TEXTVAE_POSTGRES_URL is unset and "
                    f".ci/start_postgres.sh could not start one ({started.stderr.strip()[-200:]})")
    try:
        yield lines[0]
    finally:
        subprocess.run(["bash", "-c", lines[1]], capture_output=True)


@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgresql(postgres_url, tmp_path):
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    barrier = str(tmp_path / "ready")
    workers = [_start_worker(postgres_url, name, n_trials=4, max_epochs=1, barrier=barrier)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n\n".join(outputs)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert 4 <= len(complete) <= 5   # each worker may finish one trial past the target
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    assert len({t.number for t in study.trials}) == len(study.trials)


# -- command line ---------------------------------------------------------------------------

def test_cli_tune_writes_results_and_resumes(small, tmp_path, capsys):
    from ssl_textvae.cli import main

    train = tmp_path / "train.txt"
    texts, y = small
    train.write_text("".join(f"{label}\t{text}\n" if label != -1 else f"{text}\n"
                             for text, label in zip(texts, y)))
    out = tmp_path / "out"
    argv = ["tune", "--train", str(train), "--out", str(out), "--n-trials", "2",
            "--max-epochs", "1", "--embed-dim", "8", "--hidden-dim", "16", "--batch-size", "16",
            "--latent-dims", "4", "--gamma-range", "0.5", "0.6", "--quiet"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["best_params"]) == {"vae__gamma", "vae__latent_dim"}
    assert (out / "study.db").exists() and (out / "trials.png").exists()
    assert json.loads((out / "best_params.json").read_text())["n_trials"]["complete"] == 2
    assert len([d for d in os.listdir(out / "models") if not d.startswith(".")]) >= 1
    # The same command again resumes the study: it already holds 2 trials.
    assert main(argv[:-1] + ["--n-trials", "3", "--quiet"]) == 0
    assert json.loads((out / "best_params.json").read_text())["n_trials"]["complete"] == 3
    assert main(["tune", "--train", str(tmp_path / "missing.txt"), "--n-trials", "1"]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_plot_needs_gamma_and_latent_dim(small):
    study = tune(*small, n_trials=1, search_space={"vae__gamma": [0.5]},
                 fixed_params=dict(FAST, vae__latent_dim=4), random_state=0, verbose=0)
    with pytest.raises(ValueError, match="no complete or pruned trial with vae__gamma and vae__latent_dim"):
        plot_trials(study, "unused.png")


# -- fixes found while tuning on short Yelp ---------------------------------------------------

def test_a_literal_unk_in_the_texts_keeps_the_unknown_id():
    from ssl_textvae.text.tokenization import UNK_ID, TextTokenizer

    tokenizer = TextTokenizer("word").fit(["a b c", "a <unk> d", "b c", "<unk> <unk>"])
    ids = tokenizer.encode_batch(["a <unk> d"])[0]
    assert ids[1] == UNK_ID
    assert max(tokenizer._fitted().get_vocab().values()) < tokenizer.vocab_size


def test_two_fits_with_one_random_state_are_identical(small):
    params = dict(FAST_VAE, latent_dim=4, random_state=3, verbose=0)
    first, second = (BNVAE(**params).fit(small[0]) for _ in range(2))
    np.testing.assert_array_equal(first.transform(small[0]), second.transform(small[0]))


def test_a_trial_pretraining_past_the_time_budget_is_pruned_after_its_epoch(small):
    import time as clock

    params = {"vae__gamma": 0.5, "vae__latent_dim": 4}
    longer = dict(FAST, vae__max_epochs=3)
    objective = TuningObjective(*small, search_space=SPACE, fixed_params=longer, random_state=0)
    objective.deadline = clock.monotonic() - 1.0          # tune(timeout=...) already spent
    with pytest.raises(optuna.TrialPruned, match="after epoch 1: the study's time budget is spent"):
        objective(optuna.trial.FixedTrial(params))
    assert objective.n_pretrained == 0                    # a pruned VAE is not cached
    last_epoch = TuningObjective(*small, search_space=SPACE, fixed_params=FAST, random_state=0)
    last_epoch.deadline = clock.monotonic() - 1.0         # its one epoch is its last: it completes
    assert 0.0 <= last_epoch(optuna.trial.FixedTrial(params)) <= 1.0
