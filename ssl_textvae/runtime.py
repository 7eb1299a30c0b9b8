"""Where and in which precision torch runs: ``device="auto"`` and ``precision="auto"``."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast where the hardware runs it natively; fp32 otherwise."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(device: torch.device, precision: str) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    cpu_has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return "bf16" if cpu_has_bf16 else "fp32"


@contextlib.contextmanager
def flush_denormals():
    """Treat denormal floats as zero while inside. The small uniform initialization
    of text VAEs produces denormal gradients that make fp32 CPU kernels about ten
    times slower; flushing them changes no result that matters."""
    global _flush_depth
    _flush_depth += 1
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        _flush_depth -= 1
        if _flush_depth == 0:  # nested uses (evaluation inside training) keep it on
            torch.set_flush_denormal(False)


_flush_depth = 0
