"""kill -9 in the middle of pretraining, rerun: the run resumes from its checkpoint and
ends bit for bit where the uninterrupted run ends (with the data fingerprint and the
thread policy in place)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ssl_textvae import BNVAE

from conftest import TINY, make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
PARAMS = dict(TINY, max_epochs=6)
LOSS_KEYS = ("train_loss", "valid_loss", "valid_kl", "lr")

WORKER = textwrap.dedent("""
    import sys
    from conftest import TINY, make_corpus
    from ssl_textvae import BNVAE
    texts = make_corpus(200, seed=9)[0]

    def signal_after_epoch_two(vae, record):
        if record["epoch"] == 2:
            open(sys.argv[2], "w").close()   # the parent kills us from now on, mid-epoch

    BNVAE(**dict(TINY, max_epochs=6, checkpoint_dir=sys.argv[1])).fit(
        texts, epoch_callback=signal_after_epoch_two)
""")


@pytest.mark.slow
def test_kill_9_during_pretraining_then_resume_is_bit_exact(tmp_path):
    texts = make_corpus(200, seed=9)[0]
    checkpoints, marker = tmp_path / "run", tmp_path / "epoch2"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), OMP_NUM_THREADS="1")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(checkpoints), str(marker)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if worker.poll() is not None:
                pytest.fail(f"the worker ended before it was killed:\n{worker.stdout.read()}")
            if time.monotonic() > deadline:
                pytest.fail("the worker never finished epoch 2")
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL
    resumed = BNVAE(**dict(PARAMS, checkpoint_dir=str(checkpoints))).fit(texts)
    uninterrupted = BNVAE(**PARAMS).fit(texts)
    assert [[r[k] for k in LOSS_KEYS] for r in resumed.history_] == \
        [[r[k] for k in LOSS_KEYS] for r in uninterrupted.history_]
    np.testing.assert_array_equal(resumed.transform(texts[:50]), uninterrupted.transform(texts[:50]))
