"""Where and in which precision torch runs: ``device="auto"`` and ``precision="auto"``."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

import numpy as np
import torch

PRECISIONS = ("auto", "fp32", "bf16")


def check_finite_means(means: np.ndarray) -> np.ndarray:
    """``means`` (n_texts, latent_dim) if every value is finite; else a ``ValueError``
    counting the texts affected, never NaN passed on to a head."""
    finite = np.isfinite(means).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise ValueError(f"The encoder gave non-finite (NaN or infinite) means for {len(rows)} of "
                         f"{len(means)} texts (first at row {rows[0]}): the model's weights are not "
                         "finite or overflow on this input. Retrain it with a smaller lr, or encode "
                         "with precision='fp32'.")
    return means


def resolve_device(device) -> torch.device:
    """The torch device of a ``device`` parameter: "auto" (or None: CUDA when
    available, else CPU), "cpu", "cuda", "cuda:N", "mps" or a ``torch.device``. A
    device this process cannot use (no CUDA or MPS in this build or machine, an index
    beyond the devices visible, another type) is a ``ValueError`` saying so, here,
    not a RuntimeError from inside torch later."""
    if device is None or isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or a "
                         f"torch.device. Got {device!r} instead.") from None
    available = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                 "mps": int(torch.backends.mps.is_available())}
    count = available.get(resolved.type, 0)
    if count == 0:
        kind = {"cuda": "CUDA GPU", "mps": "Apple MPS device"}.get(resolved.type,
                                                                    f"{resolved.type!r} device")
        raise ValueError(f"device={device!r} but no {kind} is available to this torch build "
                         f"(torch {torch.__version__}) on this machine. Use device='cpu', or 'auto' "
                         "to use a GPU only where there is one.")
    if resolved.index is not None and resolved.index >= count:
        raise ValueError(f"device={device!r} but only {count} {resolved.type} device(s) are "
                         f"visible (indices 0 to {count - 1}). Use one of those, or 'auto'.")
    return resolved


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast where the hardware runs it natively; fp32 otherwise."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(device: torch.device, precision: str) -> str:
    """"fp32" or "bf16" for a ``precision`` parameter on ``device``: "auto" takes bf16
    where the hardware runs it natively; an explicit "bf16" the hardware cannot run is a
    ``ValueError`` here, not an oneDNN error from inside the LSTM. Inside
    :func:`auto_precision` (a CPU training run whose matrix-multiply path was chosen,
    :mod:`ssl_textvae.runtime.matmul`) "auto" on a CPU is what that run chose."""
    if precision == "auto":
        if device.type == "cpu" and _auto_precision:
            return _auto_precision[-1]
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return "bf16" if native and cpu_runs_bf16_lstm() else "fp32"
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("precision='bf16' but this GPU does not support bfloat16. Use "
                             "precision='auto' (bf16 only where supported) or 'fp32'.")
        if device.type == "cpu" and not cpu_runs_bf16_lstm():
            raise ValueError("precision='bf16' but this CPU has no bfloat16 LSTM kernels (oneDNN "
                             "needs AVX-512; this torch build refused a bf16 LSTM here). Use "
                             "precision='auto' (bf16 only where supported) or 'fp32'.")
    return precision


@contextlib.contextmanager
def auto_precision(resolved: str):
    """Inside, ``precision="auto"`` on a CPU resolves to ``resolved`` ("fp32" or "bf16"):
    the precision of the matrix-multiply path a training run chose. Process-wide, as
    torch's thread count is; nested uses stack."""
    _auto_precision.append(resolved)
    try:
        yield
    finally:
        _auto_precision.pop()


_auto_precision = []


@functools.lru_cache(maxsize=None)
def cpu_runs_bf16_lstm() -> bool:
    """Whether an LSTM runs under CPU bf16 autocast here: oneDNN has no bf16 LSTM
    primitive on CPUs without AVX-512 (an AVX2-only AMD EPYC refused it), so ask once.
    The probe's LSTM draws its weights from a forked RNG: asking leaves a seeded run as it was."""
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(2, 2, batch_first=True)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def flush_denormals():
    """Treat denormal floats as zero while inside, on every intra-op thread.

    The small uniform initialization of text VAEs produces denormal gradients (the
    encoder's backward pass through time) that make fp32 CPU kernels about ten
    times slower; flushing them changes no result that matters.
    ``torch.set_flush_denormal`` only sets the calling thread, so with OpenMP the
    worker threads would still compute on denormals: see :func:`set_flush_denormal_all_threads`.
    """
    global _flush_depth
    _flush_depth += 1
    if _flush_depth == 1:
        set_flush_denormal_all_threads(True)
    try:
        yield
    finally:
        _flush_depth -= 1
        if _flush_depth == 0:  # nested uses (evaluation inside training) keep it on
            set_flush_denormal_all_threads(False)


_flush_depth = 0


def set_flush_denormal_all_threads(enabled: bool) -> bool:
    """``torch.set_flush_denormal(enabled)`` on the calling thread and on each thread
    of its OpenMP team (torch's intra-op pool), which keeps its own floating-point
    state. Returns whether the worker threads could be reached; where they cannot
    (no GNU-compatible OpenMP runtime in the process), only the calling thread is set.
    """
    torch.set_flush_denormal(enabled)
    n_threads = torch.get_num_threads()
    if n_threads < 2:
        return True
    parallel = _omp_parallel()
    if parallel is None:
        return False
    # Every thread of the team (the caller included) runs the callback once; it
    # holds the GIL only to set its own flag.
    callback = _OMP_TASK(lambda _: torch.set_flush_denormal(enabled))
    parallel(callback, None, n_threads, 0)
    return True


_OMP_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_omp_parallel_cache = []


def _omp_parallel():
    """``GOMP_parallel`` of the OpenMP runtime that torch's CPU library is linked to
    (other packages may load their own copy), or None."""
    if not _omp_parallel_cache:
        function = None
        if "OpenMP" in torch.__config__.parallel_info():
            for path in _loaded_libraries():
                if not os.path.basename(path).startswith("libtorch_cpu"):
                    continue
                try:  # looked up from libtorch_cpu, dlsym finds the runtime it links
                    function = ctypes.CDLL(path).GOMP_parallel
                except (OSError, AttributeError):
                    continue
                function.argtypes = [_OMP_TASK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                function.restype = None
                break
        _omp_parallel_cache.append(function)
    return _omp_parallel_cache[0]


def _loaded_libraries():
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if ".so" in line})
    except OSError:  # not Linux
        return []


def physical_memory():
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
