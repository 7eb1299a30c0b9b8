"""Pretraining on several processes with torch.distributed, in torch only: an
execution strategy of :mod:`ssl_textvae.engine` (a task's ``shard``; one process is
:class:`SingleProcess`, the strategy of every task by default).

``torchrun`` starts one process per device; each holds the whole (tokenized)
corpus, draws the same global batches from the same seed and trains on its share
of every batch under ``DistributedDataParallel``, which averages the gradients.
What BN-VAE adds to plain data parallelism:

- the batch norm on the posterior means normalizes with the moments of the global
  batch (:class:`GlobalBatchNorm1d`, an all-reduce of the sums that autograd goes
  through; ``nn.SyncBatchNorm`` runs on GPUs only), so N processes with B/N texts
  each train the model one process trains with B texts, and the bound
  E[mu^2] >= gamma^2 holds over the batch the gradient is taken on;
- a global batch goes to the ranks text by text in turn (``batch[rank::N]``), after
  a short final batch is merged into its neighbour, so every rank takes the same
  number of steps and none gets fewer than 2 texts;
- the recalibrated running statistics, the validation sums and the epoch's record
  are reduced over the ranks, and rank 0's record decides the learning rate and
  early stopping everywhere.

``batch_size`` stays the global batch: the same settings give the same model on
any number of processes (up to float rounding and the random draws of dropout and
z, which each rank makes for its own texts).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import inspect
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..text.data import EncodedCorpus, bucket_batches
from ..nn.model import ScaleFreeBatchNorm1d
from .metrics import ACTIVE_UNIT_THRESHOLD, elbo_sums, evaluate_elbo, evaluate_reconstruction_at_mean
from ..runtime.devices import resolve_device

BACKENDS = ("auto", "gloo", "nccl")


# -- the process group ------------------------------------------------------------------
def world_size_from_env() -> int:
    """Processes of the job ``torchrun`` (or SLURM through it) started; 1 outside one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_device(device="auto") -> torch.device:
    """This process's device: under ``device="auto"`` the GPU ``LOCAL_RANK`` names when
    CUDA is present, else the CPU; any other value as :func:`runtime.resolve_device`
    reads it (the same checks and errors as a single process)."""
    if device not in (None, "auto"):
        return resolve_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@contextlib.contextmanager
def process_group(backend="auto", device=None, timeout_minutes=30):
    """Join the process group torchrun's environment describes (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) for the block and leave it afterwards; with one
    process (plain ``python``, or torchrun with one) nothing is initialized.

    ``backend="auto"`` is nccl for a CUDA ``device``, gloo otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if world_size_from_env() < 2 or dist.is_initialized():
        yield
        return
    device = torch.device(device) if device is not None else local_device()
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)   # nccl binds each rank to the device current at init
    dist.init_process_group(backend, init_method="env://",
                            timeout=datetime.timedelta(minutes=timeout_minutes))
    try:
        yield
        dist.barrier()   # on success only: a rank that failed must not wait for the others
    finally:
        leave_process_group()


def leave_process_group():
    """Destroy the default process group with no gloo work left alive: a work object that
    outlives it is freed at interpreter shutdown, where taking the GIL aborts the process
    (seen as a rare SIGABRT, "terminate called without an active exception", at the end of
    the 2-rank test under load)."""
    gc.collect()   # DDP's reducer and finished works still referenced from cycles
    dist.destroy_process_group()
    gc.collect()


def current_shard():
    """The :class:`ProcessShard` of this process when a process group of 2 or more is
    initialized, else :class:`SingleProcess` (pretraining as it always was)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ProcessShard(dist.get_rank(), dist.get_world_size())
    return SingleProcess()


def is_main_process() -> bool:
    """True outside a process group and on its rank 0: the process that writes files."""
    return current_shard().rank == 0


# -- global batch-norm moments ----------------------------------------------------------
class _AllSum(torch.autograd.Function):
    """Sum over the ranks, differentiable: the gradient of each rank's addend is the
    sum of every rank's upstream gradient (each rank's loss depends on all addends)."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm1d(ScaleFreeBatchNorm1d):
    """:class:`~ssl_textvae.nn.model.ScaleFreeBatchNorm1d` whose training-mode moments are
    those of the batch all ranks hold together; eval mode is unchanged. The variance is
    taken around the global mean (two reductions, not E[x^2] - E[x]^2, which cancels
    badly when the pre-BN variance is small next to the mean, as BN-VAE lets it become)."""

    def batch_moments(self, inputs):
        # inputs: (batch, features), this rank's rows of the global batch
        count = inputs.new_full((1,), float(inputs.size(0)))
        sums = _AllSum.apply(torch.cat([inputs.sum(0), count]))         # (features + 1,)
        total = sums[-1].detach()                                        # texts in the global batch
        mean = sums[:-1] / total                                         # (features,)
        centered = inputs - mean                                         # (batch, features)
        var = _AllSum.apply(centered.pow(2).sum(0)) / total              # biased, as BN normalizes
        return centered, mean, var, total


@contextlib.contextmanager
def global_batch_norm(module):
    """Every :class:`~ssl_textvae.nn.model.ScaleFreeBatchNorm1d` of ``module`` as a
    :class:`GlobalBatchNorm1d` for the block.
    The class is swapped in place: the optimizer keeps its parameters and the state
    dict (what checkpoints and saved models hold) is unchanged."""
    norms = [layer for layer in module.modules() if type(layer) is ScaleFreeBatchNorm1d]
    for layer in norms:
        layer.__class__ = GlobalBatchNorm1d
    try:
        yield
    finally:
        for layer in norms:
            layer.__class__ = ScaleFreeBatchNorm1d


class _Terms(nn.Module):
    """The training objective as a module's ``forward``: DDP synchronizes what runs
    through its own forward (``TextVAE.autoencode`` would bypass it)."""

    def __init__(self, module, terms):
        super().__init__()
        self.module, self.terms = module, terms

    def forward(self, *inputs):
        return self.terms(*inputs)


# -- one process or one rank of many ----------------------------------------------------
class SingleProcess:
    """Pretraining in one process: each method is the identity or the local computation
    (the training loop reads the same with or without a process group)."""

    rank, world_size, min_batch_size = 0, 1, 2

    def batches(self, lengths, batch_size, rng):
        """``(indices, loss_scale)`` per step of an epoch."""
        return [(indices, 1.0) for indices in bucket_batches(lengths, batch_size, True, rng)]

    @contextlib.contextmanager
    def training(self, module, terms, device):
        """``terms(*inputs)`` for the epochs, through DDP on several processes."""
        yield terms

    def all_sum(self, tensor):
        return tensor

    def broadcast(self, value):
        return value

    def seed_epoch(self, seed, epoch):
        """Each rank's torch RNG for an epoch; one process keeps its one stream."""

    def rows(self, corpus: EncodedCorpus) -> EncodedCorpus:
        return corpus

    def mean_var(self, values):
        """Mean and unbiased variance over the rows of all ranks: (n, d) -> 2 x (d,)."""
        return values.mean(0), values.var(0)

    def check_same_data(self, fingerprint):
        pass

    def validation(self, module, corpus, device, batch_size, precision, autoencoder):
        record = evaluate_elbo(module, corpus, device, batch_size, precision)
        if autoencoder:
            record["objective"] = evaluate_reconstruction_at_mean(module, corpus, device, batch_size,
                                                                  precision)
        return record


class ProcessShard(SingleProcess):
    """Rank ``rank`` of ``world_size`` processes of the default process group."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size = int(rank), int(world_size)
        self.min_batch_size = 2 * self.world_size

    def batches(self, lengths, batch_size, rng):
        """This rank's share of each global batch and the scale of its mean loss that
        makes DDP's average of the ranks' gradients that of the global batch's mean
        loss. Every rank draws the same global batches from the same ``rng`` state."""
        check_shardable(len(lengths), batch_size, self.world_size)
        steps = []
        for indices in bucket_batches(lengths, batch_size, True, rng, min_batch_size=self.min_batch_size):
            mine = indices[self.rank::self.world_size]
            steps.append((mine, self.world_size * len(mine) / len(indices)))
        return steps

    @contextlib.contextmanager
    def training(self, module, terms, device):
        from torch.nn.parallel import DistributedDataParallel

        with global_batch_norm(module):
            # Running statistics come from global moments, the same on every rank:
            # no buffer broadcast. An adaptive softmax's tail clusters go unused by
            # batches without their words.
            no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                              inspect.signature(DistributedDataParallel).parameters
                              else {"broadcast_buffers": False})   # renamed in newer torch
            parallel = DistributedDataParallel(
                _Terms(module, terms), device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(getattr(module, "decoder", None), "adaptive", False)),
                **no_buffer_sync)
            yield parallel

    def all_sum(self, tensor):
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def seed_epoch(self, seed, epoch):
        # Dropout and z draws differ across ranks and epochs and do not depend on
        # the run's history, so a run resumed on another number of processes is seeded.
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1)[0]))

    def rows(self, corpus):
        """This rank's texts of a corpus evaluated in shards (every ``world_size``-th)."""
        return corpus.subset(np.arange(self.rank, len(corpus), self.world_size))

    def mean_var(self, values):
        values64 = values.double()
        count = self.all_sum(values64.new_tensor([values64.size(0)]))
        mean = self.all_sum(values64.sum(0)) / count
        squares = self.all_sum((values64 - mean).pow(2).sum(0))
        return mean.to(values.dtype), (squares / (count - 1).clamp(min=1)).to(values.dtype)

    def check_same_data(self, fingerprint):
        reference = self.broadcast(fingerprint)
        if reference != fingerprint:
            raise ValueError(f"Rank {self.rank} tokenized other data than rank 0 ({fingerprint} "
                             f"against {reference}); every process must read the same texts with "
                             "the same settings.")

    def validation(self, module, corpus, device, batch_size, precision, autoencoder):
        """The validation record of the whole corpus from each rank's share."""
        part = self.rows(corpus)
        sums, means = elbo_sums(module, part, device, batch_size, precision)
        objective = (evaluate_reconstruction_at_mean(module, part, device, batch_size, precision) * len(part)
                     if autoencoder and len(part) else 0.0)
        device_sums = torch.tensor([*sums, objective], dtype=torch.float64, device=device)
        reconstruction, kl, objective = (self.all_sum(device_sums) / max(len(corpus), 1)).tolist()
        _, var = self.mean_var(means.double().to(device))
        record = {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl,
                  "active_units": int((var > ACTIVE_UNIT_THRESHOLD).sum()) if len(corpus) > 1 else 0}
        if autoencoder:
            record["objective"] = objective
        return record


def check_shardable(n_texts, batch_size, world_size):
    """A ``ValueError`` unless every rank can get at least 2 texts of every batch."""
    if batch_size < 2 * world_size:
        raise ValueError(f"batch_size={batch_size} is too small for {world_size} processes: each "
                         f"process needs at least 2 texts of every batch (batch norm), so "
                         f"batch_size must be >= {2 * world_size}. batch_size is the global batch; "
                         "raise it or use fewer processes.")
    if n_texts < 2 * world_size:
        raise ValueError(f"{n_texts} training texts cannot be shared by {world_size} processes "
                         f"with at least 2 texts each; use at most {max(n_texts // 2, 1)} processes.")
