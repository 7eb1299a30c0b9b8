"""The one training loop, in torch only: pretraining, fine-tuning and dialogue training
are :class:`Task` objects it runs.

A task says what differs: the loss of a batch, the texts (their lengths) an epoch
batches, the validation record, the score that selects and stops, what follows an
epoch (the batch-norm recalibration). The loop owns the rest, the same for every
task: the optimizer (one builder), length-bucketed batches drawn from a seeded numpy
generator, gradient clipping, a divergence check on every step (a non-finite loss or
gradient raises :class:`~ssl_textvae.engine.diagnostics.TrainingDivergedError`), the tqdm
bar, the CPU thread policy, the plateau schedule (best weights kept; after
``patience`` epochs without improvement the learning rate halves and the best weights
come back; the next plateau after ``max_lr_halvings`` halvings stops), one resumable
checkpoint per epoch (:mod:`ssl_textvae.engine.checkpoints`) and the history. A task's
``shard`` (:mod:`ssl_textvae.engine.distributed`) is how the epochs execute: one process,
or one rank of a torch.distributed group.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import CHECKPOINT_NAME, load_checkpoint, restore_rngs, save_checkpoint
from .diagnostics import check_loss, diverged_error
from .distributed import SingleProcess
from ..nn.inference import batches, eval_mode
from ..nn.optim import ClippedSGD
from ..runtime.devices import autocast_context, flush_denormals, resolve_precision
from ..runtime.matmul import choose_path, use_path
from ..runtime.threads import cpu_threads


class Task:
    """What one kind of training adds to the loop; subclasses set the attributes in
    ``__init__`` and override the methods.

    Attributes
    ----------
    name : str
        "Pretraining", "Fine-tuning", ...: in error messages and the progress bar.
    module, config, device, shard
        The torch module trained in place; a dataclass with ``max_epochs``,
        ``batch_size``, ``clip_grad_norm``, ``precision`` and ``verbose`` (what a
        checkpoint compares); the device; the execution strategy.
    lengths : ndarray
        Lengths of the training rows, what an epoch's batches are bucketed by.
    n_tokens : int
        Tokens of the training rows (for ``tokens_per_second``).
    terms : tuple of str
        Names of the per-batch means :meth:`loss` returns, recorded as ``train_<name>``.
    checked : tuple of str
        Validation keys that must stay finite (else the run diverged).
    seed, torch_seed : int, int or None
        Seed of the batch order; of torch's (forked) RNG, None to go on with the
        caller's stream.
    patience, max_lr_halvings, min_delta
        The plateau schedule: the first element of :meth:`score` must exceed the best
        by more than ``min_delta`` to count as better.
    validate_start : bool
        The untrained weights compete as epoch 0.
    fused_sgd : bool
        On CPU, plain SGD takes :class:`~ssl_textvae.nn.optim.ClippedSGD`'s fused step.
    n_threads : int or None
        Intra-op CPU threads (None: :mod:`ssl_textvae.runtime.threads` adapts them).
    prefix : str
        Prefix of the estimator's parameter names (``"fine_tuning_"``), for error messages.
    explode_check : bool
        A finite training loss over :data:`~ssl_textvae.engine.diagnostics.DIVERGENCE_FACTOR`
        times the run's first one counts as diverged too (cross-entropy at an lr far too
        large grows to 1e21 without reaching inf); pretraining checks finiteness only.
    """

    name, terms, checked = "Training", (), ("valid_loss",)
    shard = SingleProcess()
    seed, torch_seed, n_threads = 0, 0, None
    patience, max_lr_halvings, min_delta = 1, 0, 0.0
    validate_start = fused_sgd = explode_check = False
    prefix = ""

    def make_optimizer(self):
        raise NotImplementedError

    def inputs(self, indices):
        """The batch of training rows ``indices`` as a tuple of tensors on the device."""
        raise NotImplementedError

    def forward(self, *inputs):
        """What :meth:`loss` reads, run under autocast (through DDP on several processes)."""
        return self.module(*inputs)

    def kl_weight(self, step):
        """Weight of a KL term at 0-based optimizer step ``step``; None: no KL term."""
        return None

    def loss(self, output, indices, kl_weight):
        """``(mean loss, [per-batch mean of each of terms])`` of a batch."""
        raise NotImplementedError

    def after_epoch(self, rng):
        """Runs after each epoch's updates (and on an untrained run), before validation."""

    def validate(self):
        """The validation record: ``{"valid_<key>": value}``."""
        raise NotImplementedError

    def inspect(self, record, state):
        """Entries or warnings a finished epoch's record adds."""

    def score(self, record):
        """A tuple, larger is better."""
        return (-record["valid_loss"],)

    def describe(self, record):
        return f"{self.name} epoch {record['epoch']}: valid_loss {record['valid_loss']:.4f}"

    def fingerprint(self):
        """What a checkpoint records of the data (see :func:`~ssl_textvae.engine.checkpoints.data_fingerprint`)."""
        raise NotImplementedError

    def matmul_workload(self):
        """The step's matrix products as a :class:`~ssl_textvae.runtime.matmul.Workload`
        for the probe that picks the CPU matrix-multiply path; None: no probe (the path
        the precision gives, or the one ``SSL_TEXTVAE_MATMUL_PATH`` pins)."""
        return None


def make_optimizer(name, parameters, lr, encoder_lr=None, module=None, weight_decay=0.0):
    """SGD or Adam over the trainable ``parameters``; with ``encoder_lr``, the parameters
    of ``module.encoder.backbone`` (a pretrained transformer) form a second group at that
    rate (a pretrained network fine-tunes at a far smaller step than one trained anew)."""
    groups = [{"params": [p for p in parameters if p.requires_grad], "lr": lr}]
    if encoder_lr is not None and module is not None and hasattr(module.encoder, "backbone"):
        backbone = {id(p) for p in module.encoder.backbone.parameters()}
        groups = [{"params": [p for p in groups[0]["params"] if id(p) not in backbone], "lr": lr},
                  {"params": [p for p in module.encoder.backbone.parameters() if p.requires_grad],
                   "lr": encoder_lr}]
    make = torch.optim.SGD if name == "sgd" else torch.optim.Adam
    return make(groups, lr=lr, weight_decay=weight_decay)


def new_state(seed):
    """The state of a run before its first epoch (what a checkpoint stores)."""
    return {"epoch": 0, "step": 0, "history": [], "best_loss": math.inf, "best_score": None,
            "best_epoch": None, "bad_epochs": 0, "halvings": 0, "best_weights": None,
            "rng": np.random.default_rng(seed).bit_generator.state, "torch_rng": None}


def fit(task: Task, checkpoint_dir: Optional[str] = None,
        epoch_callback: Optional[Callable[[dict], None]] = None) -> dict:
    """Train ``task.module`` in place, leave it in eval mode with the best weights and
    return the run's state (``history``, ``best_epoch``...). Global RNGs are left as they
    were: torch's is forked, numpy's is a local Generator. ``epoch_callback(record)``
    runs after each epoch's checkpoint; what it raises stops training (a tuner prunes).
    With a ``checkpoint_dir`` each epoch is saved there and a run found there resumes."""
    module, config, device, shard = task.module, task.config, task.device, task.shard
    module.to(device)
    optimizer = task.make_optimizer()
    state = new_state(task.seed)
    checkpoint = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir else None
    if checkpoint_dir or shard.world_size > 1:
        state["data"] = task.fingerprint()
        shard.check_same_data(state["data"])
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    if checkpoint and shard.broadcast(os.path.exists(checkpoint)):
        state = load_checkpoint(checkpoint, module, optimizer, config, state["data"])

    devices = [device.index or 0] if device.type == "cuda" else []
    with cpu_threads(device, task.n_threads) as threads, torch.random.fork_rng(devices=devices), \
            flush_denormals(), _matmul_path(task, state, threads) as path, \
            shard.training(module, task.forward, device) as forward:
        rng = restore_rngs(state, task.torch_seed)
        choice = path.as_record()   # in the first epoch record of this call
        if task.validate_start and state["best_score"] is None:
            plateau_step(module, optimizer, state, task.score({"epoch": 0, **task.validate()}),
                         task.patience, task.min_delta, epoch=0)
        for epoch in range(state["epoch"], config.max_epochs):
            if state["halvings"] > task.max_lr_halvings:
                break
            shard.seed_epoch(task.seed, epoch)
            record = train_epoch(task, optimizer, state, rng, threads, forward)
            task.after_epoch(rng)
            record.update(task.validate())
            record = shard.broadcast(record)   # rank 0's numbers decide the lr and stopping everywhere
            for key in task.checked:
                if key in record and not math.isfinite(record[key]):
                    raise diverged_error(f"the {key.replace('valid_', 'validation ')} became "
                                         f"{record[key]:g} (the training loss was finite)",
                                         epoch, state["step"], None, None, optimizer, config,
                                         task=task.name, prefix=task.prefix)
            task.inspect(record, state)
            record["matmul_path"] = path.path
            if choice is not None:
                record["matmul_probe"], choice = choice, None
            plateau_step(module, optimizer, state, task.score(record), task.patience, task.min_delta,
                         epoch=record["epoch"])
            state["history"].append({k: v if isinstance(v, (int, str, dict)) else float(v)
                                     for k, v in record.items()})
            state["epoch"] += 1
            state["rng"], state["torch_rng"] = rng.bit_generator.state, torch.get_rng_state()
            if config.verbose:
                tqdm.write(task.describe(record))
            if checkpoint and shard.rank == 0:
                save_checkpoint(checkpoint, module, optimizer, config, state)
            if epoch_callback is not None:
                epoch_callback(dict(state["history"][-1]))
        if state["best_weights"] is not None:
            module.load_state_dict(state["best_weights"])
        elif not state["history"]:  # max_epochs=0: an untrained model, statistics still exact
            task.after_epoch(rng)
    module.eval()
    return state


@contextlib.contextmanager
def _matmul_path(task, state, threads):
    """Train on the matrix-multiply path of :func:`~ssl_textvae.runtime.matmul.choose_path`
    (rank 0's on several processes); a resumed run keeps the one it started on. The probe
    steps the thread policy, so it times at the thread count training will take."""
    resumed = state["history"][-1].get("matmul_path") if state["history"] else None
    choice = task.shard.broadcast(choose_path(task.matmul_workload(), task.device, task.config.precision,
                                              resumed, threads.step))
    with use_path(choice.path, task.device):
        yield choice


def plateau_step(module, optimizer, state, score, patience, min_delta=0.0, epoch=None):
    """Keep the best weights (and ``epoch``); after ``patience`` epochs without
    improvement halve the learning rate and go back to the best weights. ``score`` is a
    tuple, larger is better; its first element must beat the best by over ``min_delta``."""
    score = [float(value) for value in score]
    best = state.get("best_score")
    if best is None or score > [best[0] + min_delta, *best[1:]]:
        state["best_score"], state["best_loss"], state["bad_epochs"] = score, -score[0], 0
        state["best_weights"], state["best_epoch"] = copy.deepcopy(module.state_dict()), epoch
        return
    state["bad_epochs"] += 1
    if state["bad_epochs"] >= patience:
        state["bad_epochs"] = 0
        state["halvings"] += 1
        for group in optimizer.param_groups:
            group["lr"] *= 0.5
        if state["best_weights"] is not None:
            module.load_state_dict(state["best_weights"])


def train_epoch(task: Task, optimizer, state, rng, threads=None, forward=None) -> dict:
    """One epoch of ``task`` in length-bucketed batches drawn with ``rng``; returns its
    record (train loss and terms, KL weight, lr, seconds, tokens per second, threads).
    ``state["step"]`` counts the optimizer steps across epochs. ``forward`` (the task's,
    through DDP on several processes) trains this process's share of each batch; the
    record is the global batch's."""
    module, config, device, shard = task.module, task.config, task.device, task.shard
    forward = forward or task.forward
    epoch, weights = state["epoch"], []
    module.train()
    steps = shard.batches(task.lengths, config.batch_size, rng)
    totals = torch.zeros(2 + len(task.terms), dtype=torch.float64, device=device)  # no sync per step
    start, thread_steps = time.perf_counter(), 0
    progress = tqdm(steps, desc=f"{task.name.lower()} {epoch + 1}/{config.max_epochs}", leave=False,
                    disable=not config.verbose, unit="batch")
    # On a CPU the finiteness check of each step's loss costs microseconds; on CUDA it
    # would wait for the device at every step, so there it runs every 64 steps.
    check_every = 1 if device.type == "cpu" else 64
    plain = shard.world_size > 1 or not task.fused_sgd
    with _update_step(module, optimizer, config, device, plain) as update:
        for batch_index, (indices, loss_scale) in enumerate(progress):
            inputs = task.inputs(indices)
            with autocast_context(device, config.precision):
                output = forward(*inputs)
            weight = task.kl_weight(state["step"])
            state["step"] += 1
            if weight is not None:
                weights.append(weight)
            loss, terms = task.loss(output, indices, weight)
            # summed over the ranks, so that all of them stop at the same step
            if batch_index % check_every == 0:
                value = float(shard.all_sum(loss.detach()))
                first = state.setdefault("start_loss", value) if task.explode_check else None
                check_loss("the training loss", value, first, epoch, state["step"], batch_index,
                           len(steps), optimizer, config, task=task.name, prefix=task.prefix)
            update.zero_grad()
            (loss * loss_scale).backward()
            try:
                update.step()
            except FloatingPointError as error:
                raise diverged_error(str(error), epoch, state["step"], batch_index, len(steps),
                                     optimizer, config, task=task.name, prefix=task.prefix) from None
            thread_steps += torch.get_num_threads()
            if threads is not None:
                threads.step()
            values = [loss.detach(), *(term.detach() for term in terms), torch.ones_like(loss)]
            totals += len(indices) * torch.stack([value.double() for value in values])
    seconds = time.perf_counter() - start
    *sums, n_texts = shard.all_sum(totals).cpu().numpy().astype(float)
    means = np.asarray(sums) / max(n_texts, 1)
    if not math.isfinite(means[0]):   # on CUDA, a step between the checks
        raise diverged_error(f"the mean training loss became {means[0]:g}", epoch, state["step"],
                             None, len(steps), optimizer, config, task=task.name, prefix=task.prefix)
    record = {"epoch": epoch + 1, "train_loss": means[0]}
    record.update({f"train_{name}": value for name, value in zip(task.terms, means[1:])})
    weight = float(np.mean(weights)) if weights else task.kl_weight(state["step"])
    if weight is not None:
        record["kl_weight"] = weight
    record.update({"lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
                   "tokens_per_second": task.n_tokens / seconds,
                   "mean_threads": thread_steps / len(steps) if steps else float(torch.get_num_threads())})
    return record


def _update_step(module, optimizer, config, device, plain=False):
    """The epoch's update: on CPU with SGD, :class:`ClippedSGD` (clipping folded into
    the step, bf16 working weights under bf16); otherwise, or when ``plain`` (under DDP,
    whose buckets expect the dense fp32 gradients they were built for),
    ``clip_grad_norm_`` and the optimizer's own step (on CUDA the casts are cheap and a
    fused step needs no sync)."""
    if device.type == "cpu" and isinstance(optimizer, torch.optim.SGD) and not plain:
        bf16 = resolve_precision(device, config.precision) == "bf16"
        return ClippedSGD(module, optimizer, config.clip_grad_norm, bf16_weights=bf16)
    return _TorchStep(module, optimizer, config.clip_grad_norm)


class _TorchStep(contextlib.nullcontext):
    def __init__(self, module, optimizer, max_norm):
        super().__init__(self)
        self.module, self.optimizer, self.max_norm = module, optimizer, max_norm

    def zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)

    def step(self):
        if self.max_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_norm)
            if not bool(torch.isfinite(norm)):
                raise FloatingPointError(f"the gradient norm became {float(norm):g}")
        self.optimizer.step()


def recalibrate_batch_norm(module, corpus, device, batch_size, rng, max_texts=50_000, shard=None,
                           precision="fp32", batches_of=None):
    """Set the running statistics of the batch norm on the means to the exact mean and
    variance over (a sample of) the training rows, at the current weights, in
    ``precision``; with a ``shard`` of several processes each encodes its share of the
    sample and the moments are those of the whole sample. ``batches_of(sample)`` yields
    the input tuples of ``module.pre_norm_posterior`` (default: a text corpus's batches).

    The moving averages lag behind an encoder whose scale keeps changing, and in
    eval mode a stale running variance scales the means below ``gamma``: the KL
    bound then fails on held-out text. One encoder-only pass fixes that.
    """
    norm = getattr(getattr(module, "mean_norm", None), "norm", None)
    if norm is None:
        return
    shard = shard or SingleProcess()
    batches_of = batches_of or (lambda sample: (inputs for _, inputs in batches(sample, batch_size, device)))
    indices = np.arange(len(corpus))
    if len(indices) > max_texts:
        indices = np.sort(rng.choice(indices, max_texts, replace=False))
    sample = shard.rows(corpus.subset(indices))
    with eval_mode(module):
        means = []
        for inputs in batches_of(sample):
            with autocast_context(device, precision):
                means.append(module.pre_norm_posterior(*inputs)[0].float())   # (batch, latent), pre-BN
        mean, var = shard.mean_var(torch.cat(means))
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
