"""Threads that follow the free CPUs: the policy on a fake CPU-usage source, the
override, and that pretraining restores the process's setting."""

import pytest
import torch

from ssl_textvae import BNVAE

from ssl_textvae.runtime import threads
from ssl_textvae.runtime.threads import AdaptiveThreads, choose_threads, requested_threads

from conftest import TINY, make_corpus


class FakeUsage:
    """CPU usage as a script: others use ``others[i]`` CPUs in window i, we use ``own``."""

    def __init__(self, others, own=1.0, n_cpus=2):
        self.others, self.own, self.n_cpus, self.available = list(others), own, n_cpus, True
        self.wall = self.busy = self.mine = 0.0

    def read(self):
        if self.wall:
            other = self.others.pop(0) if self.others else 0.0
            self.busy += min(self.n_cpus, other + self.own)
            self.mine += self.own
        self.wall += 1.0
        return self.wall, self.busy, self.mine


@pytest.fixture()
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("free, cap, expected", [
    (2.0, 2, 2), (1.9, 2, 2), (1.4, 2, 1), (1.0, 2, 1), (0.0, 2, 1), (-1.0, 2, 1),
    (7.6, 8, 8), (5.2, 8, 5), (16.0, 8, 8),
])
def test_choose_threads_rounds_the_free_cpus(free, cap, expected):
    assert choose_threads(free, cap) == expected


def test_threads_follow_the_other_processes(two_threads):
    usage = FakeUsage(others=[0.0, 1.0, 1.0, 0.9, 0.05, 0.0], own=1.0)
    with AdaptiveThreads(interval=0, first_interval=0, usage=usage) as policy:
        seen = []
        for _ in range(6):
            policy.step()
            seen.append(torch.get_num_threads())
    assert seen == [2, 1, 1, 1, 2, 2]
    assert [count for _, count in policy.history] == [2, 1, 2]
    assert torch.get_num_threads() == 2   # restored


def test_the_process_setting_is_the_upper_bound():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with AdaptiveThreads(interval=0, first_interval=0, usage=FakeUsage(others=[0.0] * 3)) as policy:
            for _ in range(3):
                policy.step()
                assert torch.get_num_threads() == 1
        assert not policy.adaptive
    finally:
        torch.set_num_threads(saved)


def test_setting_is_restored_after_an_error(two_threads):
    with pytest.raises(RuntimeError):
        with AdaptiveThreads(interval=0, first_interval=0, usage=FakeUsage(others=[2.0])) as policy:
            policy.step()
            assert torch.get_num_threads() == 1
            raise RuntimeError
    assert torch.get_num_threads() == 2


def test_a_fixed_count_overrides_the_policy(two_threads, monkeypatch):
    with AdaptiveThreads(3, interval=0, first_interval=0, usage=FakeUsage(others=[2.0])) as policy:
        policy.step()
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("SSL_TEXTVAE_NUM_THREADS", "1")
    with AdaptiveThreads(interval=0, first_interval=0, usage=FakeUsage(others=[0.0])) as policy:
        policy.step()
        assert torch.get_num_threads() == 1 and not policy.adaptive
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_environment_value_is_refused(monkeypatch, value):
    monkeypatch.setenv("SSL_TEXTVAE_NUM_THREADS", value)
    with pytest.raises(ValueError, match="SSL_TEXTVAE_NUM_THREADS must be a positive int"):
        requested_threads()


def test_auto_and_unset_adapt(monkeypatch):
    monkeypatch.setenv("SSL_TEXTVAE_NUM_THREADS", "auto")
    assert requested_threads() is None
    monkeypatch.delenv("SSL_TEXTVAE_NUM_THREADS")
    assert requested_threads() is None and requested_threads(2) == 2


def test_cpu_usage_is_read_on_linux():
    usage = threads.CpuUsage()
    if not usage.available:
        pytest.skip("no /proc/stat here")
    wall, busy, own = usage.read()
    assert busy > 0 and own > 0 and usage.n_cpus >= 1


def test_pretraining_drops_threads_on_a_busy_machine_and_restores_them(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "CpuUsage", lambda: FakeUsage(others=[1.5] * 1000))
    monkeypatch.setattr(threads, "FIRST_CHECK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)
    vae = BNVAE(**dict(TINY, max_epochs=2)).fit(make_corpus(120, seed=2)[0])
    assert vae.history_[-1]["mean_threads"] == 1.0   # every step of the second epoch on one thread
    assert torch.get_num_threads() == 2


def test_pretraining_keeps_threads_on_an_idle_machine(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "CpuUsage", lambda: FakeUsage(others=[0.0] * 1000, own=2.0))
    monkeypatch.setattr(threads, "FIRST_CHECK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)
    vae = BNVAE(**dict(TINY, max_epochs=1)).fit(make_corpus(120, seed=2)[0])
    assert vae.history_[-1]["mean_threads"] == 2.0


@pytest.fixture()
def busy_machine(monkeypatch):
    """Other processes take 1.5 of the 2 CPUs; checks at every step."""
    monkeypatch.setattr(threads, "CpuUsage", lambda: FakeUsage(others=[1.5] * 10_000))
    monkeypatch.setattr(threads, "FIRST_CHECK_SECONDS", 0.0)
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)


def test_transform_drops_threads_on_a_busy_machine_and_restores_them(two_threads, busy_machine,
                                                                   fitted_vae, corpus):
    seen = []
    hook = fitted_vae.module_.encoder.register_forward_pre_hook(
        lambda module, args: seen.append(torch.get_num_threads()))
    try:
        means = fitted_vae.transform(corpus[0])   # 600 texts: 3 batches of 256
    finally:
        hook.remove()
    assert len(means) == 600 and len(seen) == 3
    assert seen[1:] == [1, 1]   # after the first check, on the one CPU left free
    assert torch.get_num_threads() == 2


def test_fine_tuning_drops_threads_on_a_busy_machine_and_restores_them(two_threads, busy_machine,
                                                                     fitted_vae, monkeypatch):
    from sklearn.frozen import FrozenEstimator

    from ssl_textvae import FineTunedBNVAEClassifier

    from ssl_textvae.engine import fine_tuning

    seen = []
    forward = fine_tuning.EncoderClassifier.forward

    def spy(self, tokens, lengths):
        if self.training:
            seen.append(torch.get_num_threads())
        return forward(self, tokens, lengths)

    monkeypatch.setattr(fine_tuning.EncoderClassifier, "forward", spy)
    texts, labels = make_corpus(120, seed=4)
    FineTunedBNVAEClassifier(FrozenEstimator(fitted_vae), fine_tuning_max_epochs=2,
                             fine_tuning_batch_size=16, random_state=0, verbose=0).fit(texts, labels)
    assert len(seen) > 4 and set(seen[1:]) == {1}
    assert torch.get_num_threads() == 2


def test_a_pass_inside_a_policy_follows_that_policy(two_threads, busy_machine):
    """A validation pass inside pretraining steps the running policy, not a second one."""
    with threads.cpu_threads(torch.device("cpu")) as outer:
        with threads.cpu_threads(torch.device("cpu")) as inner:
            assert inner is outer
            inner.step()
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads.cpu_threads(torch.device("cpu"), n_threads=1) as fixed:
        assert not fixed.adaptive and torch.get_num_threads() == 1


def test_a_policy_that_has_exited_changes_nothing(two_threads, busy_machine):
    with threads.cpu_threads(torch.device("cpu")) as policy:
        pass
    policy.step()   # a pass of another Python thread that still holds it
    assert torch.get_num_threads() == 2
