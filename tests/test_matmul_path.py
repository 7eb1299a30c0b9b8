"""The matrix-multiply path of CPU training (ssl_textvae.runtime.matmul): probed once per
process and shape, pinned by SSL_TEXTVAE_MATMUL_PATH, never bf16 under fp32, recorded in
the fit's history, taken for real (oneDNN's own log), and torch's global state restored."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from ssl_textvae import BNVAE
from ssl_textvae.runtime import devices, matmul

from conftest import TINY, make_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
WORKLOAD = matmul.Workload(rows=40, in_features=16, out_features=50, batch=4, steps=9, lstms=2,
                           lstm_input=12, lstm_hidden=16)
CPU = torch.device("cpu")


@pytest.fixture
def probing(monkeypatch):
    """The probe on (conftest turns it off for the rest of the suite), with an empty cache."""
    monkeypatch.delenv(matmul.ENV_VARIABLE, raising=False)
    monkeypatch.setattr(matmul, "_cache", {})


@pytest.fixture(scope="module")
def texts():
    return make_corpus(120)[0]


def fake_times(monkeypatch, seconds):
    """The stand-in's output-layer seconds on each path's kernels as given, its LSTM's 0."""
    monkeypatch.setattr(matmul._StandIn, "time", lambda self, part, path: seconds[path] * (part == 0))


def test_probe_runs_once_per_process_and_shape(probing, monkeypatch):
    calls = []
    real_probe = matmul.probe
    monkeypatch.setattr(matmul, "probe", lambda *args, **kwargs: calls.append(args) or real_probe(*args, **kwargs))
    first = matmul.choose_path(WORKLOAD, CPU, "fp32")
    again = matmul.choose_path(WORKLOAD, CPU, "fp32")
    assert len(calls) == 1 and first.reason == "probe" and not first.cached
    assert again.cached and again.path == first.path and again.seconds == first.seconds
    assert set(first.seconds) == {"default", "onednn", "blas"}
    other = matmul.Workload(**{**WORKLOAD.__dict__, "rows": 41})
    matmul.choose_path(other, CPU, "fp32")
    assert len(calls) == 2


def test_the_fastest_candidate_wins_and_bf16_never_under_fp32(probing, monkeypatch):
    fake_times(monkeypatch, {"default": 3.0, "onednn": 1.0, "blas": 2.0, "bf16": 0.1})
    assert matmul.choose_path(WORKLOAD, CPU, "fp32").path == "onednn"
    paths, skipped = matmul.candidates(CPU, "fp32")
    assert "bf16" not in paths and skipped["bf16"] == "precision='fp32'"
    if devices.resolve_precision(CPU, "auto") == "bf16":
        assert matmul.choose_path(WORKLOAD, CPU, "auto").path == "bf16"
    fake_times(monkeypatch, {"default": 1.0, "onednn": 3.0, "blas": 2.0, "bf16": 9.0})
    matmul._cache.clear()
    assert matmul.choose_path(WORKLOAD, CPU, "auto").path == "default"   # fp32 can beat bf16 under auto


def test_the_probe_times_at_the_thread_count_its_policy_sets(probing, monkeypatch):
    timed, saved = [], torch.get_num_threads()
    monkeypatch.setattr(matmul._StandIn, "time", lambda self, part, path: timed.append(torch.get_num_threads()) or 1.0)

    def step():   # the policy changes the thread count after the 6th timing
        if len(timed) == 6:
            torch.set_num_threads(saved + 1)

    try:
        choice = matmul.choose_path(WORKLOAD, CPU, "fp32", step=step)
    finally:
        torch.set_num_threads(saved)
    kernels = 4   # the output layer on the BLAS and oneDNN; the LSTM on oneDNN and ATen
    # 4 warm-ups and 2 timings at the old count, then every kernel timed anew at the new one
    assert choice.threads == saved + 1 and timed == [saved] * 6 + [saved + 1] * kernels * matmul.PROBE_ROUNDS


def test_a_probe_over_its_budget_leaves_the_precision_rule_s_path(probing, monkeypatch):
    monkeypatch.setattr(matmul, "PROBE_BUDGET", 0.0)
    choice = matmul.choose_path(WORKLOAD, CPU, "auto")
    assert choice.path == matmul.precision_path(CPU, "auto") and choice.reason == "probe stopped after 0 s"


def test_bf16_is_no_candidate_without_native_bf16(probing, monkeypatch):
    monkeypatch.setattr(devices, "cpu_runs_bf16_lstm", lambda: False)
    paths, skipped = matmul.candidates(CPU, "auto")
    assert paths == ["default", "onednn", "blas"] and "native bf16" in skipped["bf16"]


def test_bf16_is_skipped_under_the_avx2_cap():
    script = textwrap.dedent("""
        import json
        from ssl_textvae.runtime import matmul
        workload = matmul.Workload(rows=40, in_features=16, out_features=50, batch=4, steps=9,
                                   lstms=2, lstm_input=12, lstm_hidden=16)
        print(json.dumps(matmul.choose_path(workload, "cpu", "auto").as_record()))
    """)
    env = {**os.environ, **AVX2_CAP, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", matmul.ENV_VARIABLE: "auto"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    choice = json.loads(done.stdout.splitlines()[-1])
    assert choice["reason"] == "probe" and "bf16" in choice["skipped"]
    assert set(choice["seconds"]) == {"default", "onednn", "blas"}


def test_a_onednn_route_that_is_not_fp32_accurate_does_not_compete(probing, monkeypatch):
    # as under ONEDNN_DEFAULT_FPMATH_MODE=BF16, where oneDNN's fp32 products run in bf16 inside
    monkeypatch.setattr(matmul._StandIn, "fp32_error", lambda self, path: 3e-3)
    choice = matmul.choose_path(WORKLOAD, CPU, "fp32")
    assert "onednn" not in choice.seconds and "not fp32-accurate" in choice.skipped["onednn"]


def test_a_pin_is_taken_without_probing(probing, monkeypatch):
    monkeypatch.setattr(matmul, "probe", lambda *args: pytest.fail("probed despite the pin"))
    monkeypatch.setenv(matmul.ENV_VARIABLE, "blas")
    assert matmul.choose_path(WORKLOAD, CPU, "fp32").path == "blas"
    monkeypatch.setenv(matmul.ENV_VARIABLE, "off")
    off = matmul.choose_path(WORKLOAD, CPU, "auto")
    assert off.path == matmul.precision_path(CPU, "auto") and off.reason == "off"


@pytest.mark.parametrize("value, message", [
    ("fast", "SSL_TEXTVAE_MATMUL_PATH must be 'auto', 'off' or one of"),
    ("bf16", r"SSL_TEXTVAE_MATMUL_PATH='bf16' cannot run here: precision='fp32'"),
])
def test_a_pin_that_cannot_run_is_refused(monkeypatch, value, message):
    monkeypatch.setenv(matmul.ENV_VARIABLE, value)
    with pytest.raises(ValueError, match=message):
        matmul.choose_path(WORKLOAD, CPU, "fp32")


def test_onednn_linear_matches_f_linear_in_fp32():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 64, generator=generator, requires_grad=True)
    weight = torch.randn(50, 64, generator=generator, requires_grad=True)
    bias = torch.randn(50, generator=generator, requires_grad=True)
    upstream = torch.randn(3, 7, 50, generator=generator)
    expected = F.linear(x, weight, bias)
    expected_grads = torch.autograd.grad(expected, (x, weight, bias), upstream)
    with matmul.OneDNNLinearMode():
        got = torch.nn.functional.linear(x, weight, bias=bias)
    grads = torch.autograd.grad(got, (x, weight, bias), upstream)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-5)


def test_fit_records_the_choice_and_restores_torch(probing, texts, tmp_path):
    seen = []

    def during(vae, record):
        seen.append((torch.backends.mkldnn.enabled, torch._C._len_torch_function_stack(),
                     devices.resolve_precision(CPU, "auto")))

    before = (torch.backends.mkldnn.enabled, torch._C._len_torch_function_stack(),
              devices.resolve_precision(CPU, "auto"))
    vae = BNVAE(**dict(TINY, max_epochs=2)).fit(texts, epoch_callback=during)
    probe = vae.history_[0]["matmul_probe"]
    assert probe["reason"] == "probe" and probe["path"] in probe["seconds"] and probe["probe_seconds"] > 0
    assert [r["matmul_path"] for r in vae.history_] == [probe["path"]] * 2
    assert "matmul_probe" not in vae.history_[1]
    precision = "bf16" if probe["path"] == "bf16" else "fp32"
    assert seen[0] == (probe["path"] != "blas", int(probe["path"] == "onednn"), precision)
    assert (torch.backends.mkldnn.enabled, torch._C._len_torch_function_stack(),
            devices.resolve_precision(CPU, "auto")) == before
    vae.save(str(tmp_path / "vae"))
    assert BNVAE.load(str(tmp_path / "vae")).history_ == vae.history_


@pytest.mark.parametrize("path", ["onednn", "blas"])
def test_a_failed_fit_restores_torch(monkeypatch, texts, path):
    monkeypatch.setenv(matmul.ENV_VARIABLE, path)

    def stop(vae, record):
        assert torch.backends.mkldnn.enabled == (path != "blas")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        BNVAE(**dict(TINY, precision="fp32")).fit(texts, epoch_callback=stop)
    assert torch.backends.mkldnn.enabled and torch._C._len_torch_function_stack() == 0
    assert not devices._auto_precision


def test_a_resumed_run_keeps_its_path(probing, monkeypatch, texts, tmp_path):
    monkeypatch.setenv(matmul.ENV_VARIABLE, "onednn")
    params = dict(TINY, precision="fp32", checkpoint_dir=str(tmp_path))
    BNVAE(**dict(params, max_epochs=1)).fit(texts)
    monkeypatch.delenv(matmul.ENV_VARIABLE)
    monkeypatch.setattr(matmul, "probe", lambda *args: pytest.fail("a resumed run probed"))
    resumed = BNVAE(**dict(params, max_epochs=2)).fit(texts)
    assert [r["matmul_path"] for r in resumed.history_] == ["onednn", "onednn"]
    assert resumed.history_[1]["matmul_probe"]["reason"] == "resumed"


WORKER = textwrap.dedent("""
    import ctypes, os, sys
    from conftest import TINY, make_corpus
    from ssl_textvae import BNVAE
    texts = make_corpus(64)[0]
    for path in sys.argv[1:]:
        os.environ["SSL_TEXTVAE_MATMUL_PATH"] = path
        print(f"=== {path}", flush=True)
        BNVAE(**dict(TINY, max_epochs=1)).fit(texts)
        ctypes.CDLL(None).fflush(None)   # oneDNN's log goes through C's stdout
""")


def onednn_log(paths):
    """{path: the kinds and data types of the oneDNN primitives a one-epoch fit ran}."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([ROOT, TESTS])}
    done = subprocess.run([sys.executable, "-c", WORKER, *paths], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log, section = {}, None
    for line in done.stdout.splitlines():
        if line.startswith("=== "):
            section = log.setdefault(line[4:], set())
        elif line.startswith("onednn_verbose") and ",exec," in line and section is not None:
            fields = line.split(",")
            kind = fields[fields.index("exec") + 2]
            section.add((kind, "bf16" if "bf16::" in line else "f32"))
    return log


def test_each_path_runs_the_kernels_it_names():
    paths = ["default", "onednn", "blas"] + (["bf16"] if devices.cpu_runs_bf16_lstm() else [])
    log = onednn_log(paths)
    assert ("rnn", "f32") in log["default"] and not {"inner_product", "matmul"} & {k for k, _ in log["default"]}
    assert {("rnn", "f32"), ("inner_product", "f32")} <= log["onednn"]
    assert not {"rnn", "inner_product", "matmul"} & {k for k, _ in log["blas"]}   # the BLAS and ATen alone
    if "bf16" in log:
        assert {("rnn", "bf16"), ("matmul", "bf16")} <= log["bf16"]


def test_the_path_benchmark_runs_at_tiny_size(tmp_path):
    out = tmp_path / "paths.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_matmul_paths.py"), "--quick",
                           "--threads", "1", "--paths", "default", "--out", str(out)],
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["settings"]) == {"own", "avx2"} and result["machine"]["model_name"]
    for setting in result["settings"].values():
        assert set(setting["paths"]) == {"auto", "default"} and setting["fastest"] == "default"
        assert setting["chosen"] in setting["probe_estimates_seconds_per_step"]
        assert setting["auto_over_fastest"] > 0 and not setting["paths"]["auto"]["errors"]
    assert "bf16" in result["settings"]["avx2"]["skipped"]
