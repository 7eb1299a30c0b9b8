"""The default CPU update: gradient-norm clipping folded into plain SGD, with fp32
master weights and bf16 working copies when training under bf16 autocast.

Under autocast every step casts the fp32 weights of the linear and LSTM layers to
bf16 and casts their bf16 gradients back to fp32; clipping then scales every
gradient in one pass and SGD reads it again in another. On a 2-core CPU these
passes (casts, norms, scaling, update, zeroing) are memory-bound and took a sizeable
share of a training step, most of it on the 512 x V output layer. Here the
layers hold bf16 copies during an epoch, their gradients stay bf16 and the update
``master -= lr * clip_coef * grad`` reads each gradient once, then refreshes the
copy. Embeddings get sparse gradients for the epoch, so the update touches only
the rows of the batch's words instead of zeroing, norming and adding V x E values
twice a step. The step is the same as ``clip_grad_norm_`` followed by ``SGD.step`` (the
gradients autocast produces are bf16 either way); only the norm of each bf16
gradient is rounded to bf16 before the clipping coefficient is computed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# The layers whose weights bf16 autocast casts at each use (embeddings and batch norm stay fp32).
AUTOCAST_LAYERS = (nn.Linear, nn.LSTM)

# Elements per piece of a master-weight update: the bf16 gradient's fp32 cast, the
# master and the working copy of a piece stay in cache between the three passes
# (the 512 x V output layer updated whole streams each pass through memory).
UPDATE_CHUNK = 2**18


class ClippedSGD:
    """One epoch's update steps for a plain ``torch.optim.SGD`` (no momentum, no
    weight decay), which keeps the learning rates and the checkpointed state.

    Use as a context manager around the epoch: on entry the layers of
    :data:`AUTOCAST_LAYERS` get bf16 working weights (when ``bf16_weights``) and the
    embeddings sparse gradients; on exit the fp32 masters and the embeddings' setting
    are put back, so outside the epoch the module is unchanged.
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.SGD, max_norm: float,
                 bf16_weights: bool):
        for group in optimizer.param_groups:
            if group.get("momentum") or group.get("weight_decay") or group.get("nesterov"):
                raise ValueError("ClippedSGD implements plain SGD only (no momentum or weight decay).")
        self.optimizer, self.max_norm = optimizer, max_norm
        self.masters = {}
        if bf16_weights:
            for layer in module.modules():
                if isinstance(layer, AUTOCAST_LAYERS):
                    for parameter in layer.parameters(recurse=False):
                        if parameter.requires_grad:
                            self.masters[parameter] = parameter.data
        self.embeddings = {layer: layer.sparse for layer in module.modules()
                           if isinstance(layer, nn.Embedding)}

    def __enter__(self) -> "ClippedSGD":
        for parameter, master in self.masters.items():
            parameter.data = master.to(torch.bfloat16)
        for layer in self.embeddings:
            layer.sparse = True
        return self

    def __exit__(self, *exc_info):
        for parameter, master in self.masters.items():
            parameter.data = master
        for layer, sparse in self.embeddings.items():
            layer.sparse = sparse

    def zero_grad(self):
        for group in self.optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    @torch.no_grad()
    def step(self):
        coef = self._clip_coefficient()
        for group in self.optimizer.param_groups:
            alpha = -group["lr"] * coef
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                master = self.masters.get(parameter)
                if master is None:
                    parameter.add_(parameter.grad, alpha=alpha)
                    continue
                pieces = [t.reshape(-1).split(UPDATE_CHUNK) for t in (master, parameter.grad, parameter)]
                for master_piece, grad_piece, working_piece in zip(*pieces):
                    master_piece.add_(grad_piece, alpha=alpha)   # bf16 gradient read into fp32
                    working_piece.copy_(master_piece)

    def _clip_coefficient(self) -> float:
        # As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1.
        if not self.max_norm:
            return 1.0
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return 1.0
        norms = torch.stack([torch.linalg.vector_norm(_values(grad)).float() for grad in grads])
        total = float(torch.linalg.vector_norm(norms))
        if not math.isfinite(total):   # the update would make every weight NaN
            raise FloatingPointError(f"the gradient norm became {total:g}")
        return min(1.0, self.max_norm / (total + 1e-6))


def _values(grad: torch.Tensor) -> torch.Tensor:
    # a sparse gradient repeats the rows of words seen twice: sum them before the norm
    return grad.coalesce().values() if grad.is_sparse else grad
