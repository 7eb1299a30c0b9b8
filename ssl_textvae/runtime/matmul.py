"""Which matrix-multiply path CPU training takes, measured once per process and shape.

torch sends an fp32 ``addmm`` (``nn.Linear``) to the BLAS it links (MKL in the x86
wheels) and to oneDNN only when reduced internal precision is allowed
(``torch.backends.mkldnn.matmul.fp32_precision``); its LSTM runs oneDNN's RNN primitive.
Which is fastest depends on the CPU (on a Zen 5 EPYC MKL's fp32 matmul ran at 221
GFLOP/s, oneDNN's at 499), so at the start of pretraining :func:`choose_path` times a
stand-in of the step's products (the output layer and an LSTM at the model's sizes,
forward and backward, scaled down) on each candidate and keeps the fastest:

``"default"``  torch's own kernels in fp32: ``nn.Linear`` through the BLAS, the LSTM through oneDNN.
``"onednn"``   every product through oneDNN: ``F.linear`` as oneDNN inner products
               (``mkldnn::_linear_pointwise``, forward and both backward products), the LSTM as above.
``"blas"``     every product through the BLAS: the LSTM as ATen's own cell (oneDNN disabled).
``"bf16"``     bf16 autocast (oneDNN's bf16 kernels): only where ``precision`` resolves to
               bf16 ("auto" on a CPU that runs it natively, or "bf16").

The fp32 paths differ only in fp32 rounding (oneDNN's is checked against float64 before it
competes: ``ONEDNN_DEFAULT_FPMATH_MODE=BF16`` would make it bf16 inside); under
``precision="auto"`` a chosen fp32 path makes "auto" mean fp32 for the run. The choice is
cached per process, shape, precision and thread count. The probe steps the training's thread
policy between timings (so it times at the count training takes) and gives up after
:data:`PROBE_BUDGET` seconds on a busy machine, leaving the precision rule's path. It times
the products only: where a step's other work dominates (a tiny model) its choice can miss.
``SSL_TEXTVAE_MATMUL_PATH`` pins a path (or "off": no probe, the precision rule alone, as
before the probe); a resumed run keeps the path it started on. :func:`use_path` applies
a path: the oneDNN route is a thread-local torch function mode; the BLAS route sets the
process-wide ``torch.backends.mkldnn.enabled`` (restored on exit).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from . import devices

PATHS = ("default", "onednn", "blas", "bf16")
ENV_VARIABLE = "SSL_TEXTVAE_MATMUL_PATH"
# The stand-in's size: at most this many multiply-adds in the output layer's forward
# product, this many rows, and LSTM time steps (each timed forward + backward); the timings
# of each kernel after one to warm up; the seconds after which the probe gives up.
PROBE_MACS, PROBE_ROWS, PROBE_STEPS, PROBE_ROUNDS, PROBE_BUDGET = 2**27, 512, 16, 2, 2.0


@dataclass(frozen=True)
class Workload:
    """The products of one training step: ``rows`` tokens through a Linear
    (``in_features`` -> ``out_features``) and ``lstms`` LSTMs of ``steps`` time steps
    each (a mean) over ``batch`` texts, ``lstm_input`` -> ``lstm_hidden``."""
    rows: int
    in_features: int
    out_features: int
    batch: int
    steps: float
    lstms: int
    lstm_input: int
    lstm_hidden: int


@dataclass
class Choice:
    """The path a run takes and why: ``reason`` is "probe", "pinned", "resumed", "only
    candidate", "off" or "not a CPU"; ``seconds`` the probe's estimate of each candidate's
    matrix-product time per step; ``skipped`` why the other paths did not compete."""
    path: str
    reason: str
    seconds: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    probe_seconds: float = 0.0
    cached: bool = False
    threads: int = 1

    def as_record(self) -> dict:
        return asdict(self)


def requested_path():
    """``SSL_TEXTVAE_MATMUL_PATH``: None for "auto" or unset (probe), else "off" or a path."""
    value = os.environ.get(ENV_VARIABLE, "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in PATHS + ("off",):
        raise ValueError(f"{ENV_VARIABLE} must be 'auto', 'off' or one of {PATHS}, got {value!r}.")
    return value


def candidates(device: torch.device, precision: str):
    """(paths that may compete, {path: why not}) for ``precision`` on ``device``."""
    resolved = devices.resolve_precision(device, precision)
    if resolved == "bf16" and precision == "bf16":
        return ["bf16"], {path: "precision='bf16' asks for bf16" for path in PATHS[:3]}
    paths, skipped = ["default"], {}
    if not torch.backends.mkldnn.is_available():
        skipped["onednn"] = skipped["blas"] = "this torch build has no oneDNN"
    elif not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        skipped["onednn"], paths = "this torch has no mkldnn::_linear_pointwise", paths + ["blas"]
    else:
        paths += ["onednn", "blas"]
    if resolved == "bf16":
        paths.append("bf16")
    else:
        skipped["bf16"] = ("precision='fp32'" if precision == "fp32" else
                           "this CPU has no native bf16 (AVX-512 bf16 and oneDNN's bf16 LSTM)")
    return paths, skipped


def precision_path(device, precision) -> str:
    """The path of the precision rule alone: bf16 where ``precision`` resolves to it."""
    return "bf16" if devices.resolve_precision(device, precision) == "bf16" else "default"


_cache = {}


def choose_path(workload, device, precision, resumed=None, step=None) -> Choice:
    """The path of a run of ``workload`` (None: nothing to time) on ``device``: the pin,
    else the path a resumed run started on, else the probe's fastest (cached per process,
    shape, device, precision and thread count). ``step``, the running thread policy's
    (:class:`~ssl_textvae.runtime.threads.AdaptiveThreads`), is called after each timing."""
    device, pinned = torch.device(device), requested_path()
    threads = torch.get_num_threads()
    if device.type != "cpu":
        return Choice(precision_path(device, precision), "not a CPU", threads=threads)
    paths, skipped = candidates(device, precision)
    if pinned == "off":
        return Choice(precision_path(device, precision), "off", skipped=skipped, threads=threads)
    if pinned is not None:
        if pinned not in paths:
            raise ValueError(f"{ENV_VARIABLE}={pinned!r} cannot run here: {skipped[pinned]}. "
                             f"Use one of {paths}, 'auto' or 'off'.")
        return Choice(pinned, "pinned", skipped=skipped, threads=threads)
    if resumed in paths:
        return Choice(resumed, "resumed", skipped=skipped, threads=threads)
    if workload is None:
        return Choice(precision_path(device, precision), "off", skipped=skipped, threads=threads)
    if len(paths) == 1:
        return Choice(paths[0], "only candidate", skipped=skipped, threads=threads)
    key = (workload, precision, devices.resolve_precision(device, precision), threads)
    if key not in _cache:
        _cache[key] = probe(workload, paths, skipped, step, precision_path(device, precision))
        return _cache[key]
    return Choice(**{**_cache[key].as_record(), "cached": True})


def probe(workload: Workload, paths, skipped, step=None, fallback="default") -> Choice:
    """Time the stand-in of ``workload``'s products for each of ``paths``, interleaved; the
    fastest wins. Paths share kernels (:data:`KERNELS`): each is run once to warm up, then
    timed :data:`PROBE_ROUNDS` times at one thread count (a ``step`` that changes the count
    restarts the timing). Past :data:`PROBE_BUDGET` seconds it stops and ``fallback`` wins."""
    start, skipped = time.perf_counter(), dict(skipped)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        stand_in = _StandIn(workload)
    if "onednn" in paths:
        error = stand_in.fp32_error("onednn")
        if not error < 1e-4:
            skipped["onednn"] = f"not fp32-accurate here (relative error {error:.1e} against float64)"
    paths = [p for p in paths if p not in skipped]
    parts = [(part, kernel) for part in (0, 1) for kernel in dict.fromkeys(KERNELS[p][part] for p in paths)]
    warm, samples, turn = set(), {part: [] for part in parts}, 0
    while min(map(len, samples.values())) < PROBE_ROUNDS:
        turn += 1
        for part in (parts if turn % 2 else parts[::-1]):
            if len(samples[part]) >= PROBE_ROUNDS:
                continue
            if time.perf_counter() - start > PROBE_BUDGET:
                return Choice(fallback, f"probe stopped after {PROBE_BUDGET:g} s", {}, skipped,
                              time.perf_counter() - start, threads=torch.get_num_threads())
            threads, seconds = torch.get_num_threads(), stand_in.time(*part)
            if part in warm:
                samples[part].append(seconds)
            warm.add(part)
            if step is not None:
                step()
            if torch.get_num_threads() != threads:
                samples = {part: [] for part in parts}
    estimates = {path: min(samples[0, KERNELS[path][0]]) * stand_in.linear_scale
                 + min(samples[1, KERNELS[path][1]]) * stand_in.lstm_scale for path in paths}
    return Choice(min(estimates, key=estimates.get), "probe", estimates, skipped,
                  time.perf_counter() - start, threads=torch.get_num_threads())


# The paths whose kernels each path runs for (the output layer, the LSTM).
KERNELS = {"default": ("default", "default"), "onednn": ("onednn", "default"),
           "blas": ("default", "blas"), "bf16": ("bf16", "bf16")}


class _StandIn:
    """The output layer's product on at most :data:`PROBE_ROWS` rows and as many outputs
    as :data:`PROBE_MACS` allow, and one LSTM of the batch over its mean steps (at most
    :data:`PROBE_STEPS`: oneDNN's LSTM costs more per call and less per step than ATen's,
    so fewer steps would favour ATen's); the scales turn their times into a step's. With
    one thread the clock is this process's CPU time (other jobs on the machine do not
    count), else wall time."""

    def __init__(self, w: Workload):
        rows = max(1, min(w.rows, PROBE_ROWS))
        outputs = max(1, min(w.out_features, max(256, PROBE_MACS // (rows * w.in_features))))
        steps = max(1, min(PROBE_STEPS, round(w.steps)))
        self.linear_scale = (w.rows / rows) * (w.out_features / outputs)
        self.lstm_scale = w.lstms * w.steps / steps
        self.clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
        self.fp32 = {"x": torch.randn(rows, w.in_features), "w": torch.randn(outputs, w.in_features) * 0.05,
                     "b": torch.zeros(outputs), "g": torch.randn(rows, outputs),
                     "lstm": torch.nn.LSTM(w.lstm_input, w.lstm_hidden, batch_first=True),
                     "seq": torch.randn(w.batch, steps, w.lstm_input),                  # (batch, steps, input)
                     "seq_g": torch.randn(w.batch, steps, w.lstm_hidden)}
        self.bf16 = {k: (copy.deepcopy(v) if k == "lstm" else v).to(torch.bfloat16)   # ClippedSGD's
                     for k, v in self.fp32.items()}                                   # bf16 weights
        for tensors in (self.fp32, self.bf16):
            for k in ("x", "w", "b", "seq"):
                tensors[k].requires_grad_()

    def fp32_error(self, path) -> float:
        """Relative error of the path's output-layer forward (16 rows) against float64."""
        x, w, b = (self.fp32[k].detach() for k in ("x", "w", "b"))
        x = x[:16]
        with torch.no_grad(), use_path(path):
            got = F.linear(x, w, b)
        exact = F.linear(x.double(), w.double(), b.double())
        return float((got.double() - exact).abs().max() / exact.abs().max().clamp_min(1e-30))

    def time(self, part, path) -> float:
        """Seconds of the output layer (``part`` 0) or the LSTM (1), forward + backward, on ``path``."""
        t = self.bf16 if path == "bf16" else self.fp32
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if path == "bf16" else contextlib.nullcontext()
        with use_path(path), autocast:
            start = self.clock()
            if part == 0:
                F.linear(t["x"], t["w"], t["b"]).backward(t["g"])
            else:
                t["lstm"](t["seq"])[0].backward(t["seq_g"])
            return self.clock() - start


@contextlib.contextmanager
def use_path(path, device=None):
    """Run the inside on ``path``; with a CPU ``device`` (a training run), precision="auto"
    also resolves to the path's precision inside (fp32 for an fp32 path)."""
    precision = contextlib.nullcontext()
    if device is not None and torch.device(device).type == "cpu":
        precision = devices.auto_precision("bf16" if path == "bf16" else "fp32")
    route = {"onednn": OneDNNLinearMode, "blas": _without_onednn}.get(path, contextlib.nullcontext)
    with precision, route():
        yield


@contextlib.contextmanager
def _without_onednn():
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = saved


_linear_pointwise = None


def onednn_linear(inputs, weight, bias=None):
    """``F.linear`` in fp32 through oneDNN's inner product, forward and backward."""
    global _linear_pointwise
    if _linear_pointwise is None:
        _linear_pointwise = torch.ops.mkldnn._linear_pointwise
    flat = inputs.reshape(-1, inputs.size(-1))                              # (rows, in)
    if torch.is_grad_enabled() and (inputs.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        out = _OneDNNLinear.apply(flat, weight, bias)
    else:
        out = _linear_pointwise(flat, weight, bias, "none", [], "")
    return out.reshape(*inputs.shape[:-1], weight.size(0))                 # (..., out)


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, weight, bias):
        # inputs: (rows, in); weight: (out, in) -> (rows, out)
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias = bias is not None
        return _linear_pointwise(inputs, weight, bias, "none", [], "")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        # grad: (rows, out); weight.t() and inputs.t() are read in place as transposed weights
        inputs, weight = ctx.saved_tensors
        grad = grad.contiguous()
        d_inputs = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_inputs = _linear_pointwise(grad, weight.t(), None, "none", [], "")        # (rows, in)
        if ctx.needs_input_grad[1]:
            d_weight = _linear_pointwise(grad.t(), inputs.t(), None, "none", [], "")    # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_bias = grad.sum(0)
        return d_inputs, d_weight, d_bias


class OneDNNLinearMode(TorchFunctionMode):
    """Inside, fp32 ``F.linear`` on CPU tensors (every ``nn.Linear``) runs :func:`onednn_linear`;
    under autocast, or for other dtypes and devices, torch's own kernel. Thread-local."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and not torch.is_autocast_enabled("cpu"):
            named = {**dict(zip(("input", "weight", "bias"), args)), **kwargs}
            inputs, weight, bias = named["input"], named["weight"], named.get("bias")
            if (inputs.dtype == weight.dtype == torch.float32 and inputs.device.type == "cpu"
                    and inputs.dim() >= 2 and inputs.numel() and weight.dim() == 2
                    and (bias is None or bias.dtype == torch.float32)):
                return onednn_linear(inputs, weight, bias)
        return func(*args, **kwargs)
