"""The pretraining loop, in torch only: length-bucketed batches, gradient clipping,
learning-rate halving on a validation plateau (Zhu et al. / He et al.), the best
weights kept, one checkpoint per epoch so an interrupted run resumes.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import CHECKPOINT_NAME, data_fingerprint, load_checkpoint, restore_rngs, save_checkpoint
from .data import EncodedCorpus, collate, n_batches
from .diagnostics import check_loss, check_pre_bn_variance, check_validation_kl, diverged_error
from .distributed import SingleProcess, current_shard
from .inference import batches, eval_mode
from .optim import ClippedSGD
from .runtime import autocast_context, flush_denormals, resolve_precision
from .threads import AdaptiveThreads

OPTIMIZERS = ("sgd", "adam")
OBJECTIVES = ("vae", "autoencoder")
KL_SCHEDULES = ("constant", "linear", "cyclical")


@dataclass
class TrainingConfig:
    optimizer: str = "sgd"
    lr: float = 1.0
    batch_size: int = 32
    max_epochs: int = 20
    clip_grad_norm: float = 5.0
    lr_patience: int = 2
    max_lr_halvings: int = 3
    precision: str = "auto"
    seed: int = 0
    verbose: int = 1
    # Collapse remedies (see KLSchedule and kl_penalty); the defaults train BN-VAE / a plain VAE.
    objective: str = "vae"
    kl_schedule: str = "constant"
    kl_start: float = 0.0
    kl_warmup_steps: int = 10_000
    kl_cycles: int = 4
    kl_cycle_ratio: float = 0.5
    free_bits: float = 0.0
    # Learning rate of a pretrained transformer encoder that trains (None: none trains);
    # the LSTM decoder and the posterior layer keep ``lr``.
    encoder_lr: Optional[float] = None
    # Intra-op CPU threads: None adapts to the CPUs other processes leave free (see
    # ssl_textvae.threads; SSL_TEXTVAE_NUM_THREADS fixes it). A setting of the machine,
    # not of the run: a checkpoint does not compare it.
    n_threads: Optional[int] = None


class KLSchedule:
    """Weight of the KL term at each optimizer step (0-based), in [0, 1].

    Parameters
    ----------
    kind : {"constant", "linear", "cyclical"}
        ``"constant"``: always ``final``. ``"linear"``: KL annealing (Bowman et al.,
        2016, with the step size of He et al., 2019): from ``start`` up to 1 in
        ``warmup_steps`` equal steps, then 1. ``"cyclical"``: the cyclical schedule of
        Fu et al. (NAACL 2019): ``total_steps`` split into ``n_cycles`` cycles; in
        the first ``cycle_ratio`` of each cycle the weight rises linearly from
        ``start`` to 1, for the rest of the cycle it stays at 1.
    start : float
        Weight at step 0 of a ramp.
    warmup_steps : int
        Length of the linear ramp.
    n_cycles : int
    cycle_ratio : float
        Share of each cycle spent increasing the weight, in (0, 1].
    total_steps : int
        Steps the cyclical schedule is spread over (``max_epochs`` epochs).
    final : float
        The weight once annealed (and of ``"constant"``); 0 for an autoencoder.
    """

    def __init__(self, kind="constant", start=0.0, warmup_steps=1, n_cycles=4, cycle_ratio=0.5,
                 total_steps=1, final=1.0):
        if kind not in KL_SCHEDULES:
            raise ValueError(f"kind must be one of {KL_SCHEDULES}, got {kind!r}.")
        self.kind, self.start, self.final = kind, float(start), float(final)
        self.warmup_steps, self.n_cycles, self.cycle_ratio = warmup_steps, n_cycles, cycle_ratio
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.final
        if self.kind == "linear":
            progress = step / max(self.warmup_steps, 1)
        else:
            period = max(self.total_steps / self.n_cycles, 1.0)
            progress = (step % period) / period / self.cycle_ratio
        return min(self.final, self.start + (self.final - self.start) * progress)

    @classmethod
    def from_config(cls, config: "TrainingConfig", steps_per_epoch: int) -> "KLSchedule":
        """The schedule of a training configuration; an autoencoder's weight is 0."""
        final = 0.0 if config.objective == "autoencoder" else 1.0
        kind = "constant" if config.objective == "autoencoder" else config.kl_schedule
        return cls(kind, config.kl_start, config.kl_warmup_steps, config.kl_cycles,
                   config.kl_cycle_ratio, config.max_epochs * steps_per_epoch, final)


def kl_penalty(kl_per_dim: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """The KL term of the training loss per text: (batch, latent) -> (batch,).

    With ``free_bits`` > 0 each text's KL in each dimension counts as
    ``max(KL_d, free_bits)``: below the target the term exerts no pull toward the
    prior. This is the dimension-wise free bits of Li et al. (EMNLP 2019, "A
    Surprisingly Effective Fix for Deep Latent Variable Modeling of Text", Eq. 5;
    their code's ``--fb 2`` masks the KL per text and dimension below
    ``target_kl / latent_dim``, which has the same gradient), not the per-batch
    group average of Kingma et al. (2016).
    """
    if free_bits:
        kl_per_dim = torch.clamp(kl_per_dim, min=free_bits)
    return kl_per_dim.sum(-1)


def objective_terms(module, *inputs, objective):
    """The module's loss terms for ``objective`` on a batch's ``inputs`` (``tokens``,
    ``lengths`` and a pretrained encoder's inputs where there are some): sampled z for a
    VAE, z = mu for an autoencoder (see :meth:`TextVAE.autoencode`)."""
    if objective == "autoencoder":
        return module.autoencode(*inputs)
    return module(*inputs)


def make_optimizer(name, parameters, lr, encoder_lr=None, module=None):
    """SGD or Adam over the trainable ``parameters``; with ``encoder_lr``, the parameters
    of ``module.encoder.backbone`` (a pretrained transformer) form a second group at that
    rate (a pretrained network fine-tunes at a far smaller step than one trained anew)."""
    groups = [{"params": [p for p in parameters if p.requires_grad], "lr": lr}]
    if encoder_lr is not None and module is not None and hasattr(module.encoder, "backbone"):
        backbone = {id(p) for p in module.encoder.backbone.parameters()}
        groups = [{"params": [p for p in groups[0]["params"] if id(p) not in backbone], "lr": lr},
                  {"params": [p for p in module.encoder.backbone.parameters() if p.requires_grad],
                   "lr": encoder_lr}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    return torch.optim.Adam(groups, lr=lr)


def pretrain(module, train: EncodedCorpus, valid: EncodedCorpus, config: TrainingConfig,
             device: torch.device, checkpoint_dir: Optional[str] = None,
             epoch_callback: Optional[Callable[[dict], None]] = None):
    """Train ``module`` in place; return the per-epoch history (a list of dicts).

    Global RNGs are left as they were: torch's are forked, numpy's is a local Generator.
    ``epoch_callback(record)``, when given, is called after each epoch (and its
    checkpoint) with that epoch's history entry; an exception it raises stops
    training and propagates (a tuner uses this to prune a trial).

    In a process group of 2 or more (``torchrun``, see :mod:`ssl_textvae.distributed`)
    every rank calls this with the same data and settings: ``config.batch_size`` is
    the global batch, rank 0 alone writes the checkpoint, and every rank returns the
    same history and weights.
    """
    shard = current_shard()
    module.to(device)
    optimizer = make_optimizer(config.optimizer, module.parameters(), config.lr, config.encoder_lr, module)
    schedule = KLSchedule.from_config(config, n_batches(len(train), config.batch_size, shard.min_batch_size))
    state = {"epoch": 0, "history": [], "best_loss": math.inf, "bad_epochs": 0, "halvings": 0,
             "best_weights": None, "rng": np.random.default_rng(config.seed).bit_generator.state,
             "torch_rng": None, "step": 0}
    checkpoint = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir else None
    if checkpoint_dir or shard.world_size > 1:
        state["data"] = data_fingerprint(train, valid)
        shard.check_same_data(state["data"])
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    if checkpoint and shard.broadcast(os.path.exists(checkpoint)):
        state = load_checkpoint(checkpoint, module, optimizer, config, state["data"])

    devices = [device.index or 0] if device.type == "cuda" else []
    terms = functools.partial(objective_terms, module, objective=config.objective)
    with AdaptiveThreads(config.n_threads, adapt=device.type == "cpu") as threads, \
            torch.random.fork_rng(devices=devices), flush_denormals(), \
            shard.training(module, terms, device) as terms:
        rng = restore_rngs(state, config.seed)
        while state["epoch"] < config.max_epochs and state["halvings"] <= config.max_lr_halvings:
            shard.seed_epoch(config.seed, state["epoch"])
            record = train_epoch(module, optimizer, train, config, device, rng, state["epoch"],
                                 schedule, state, threads, shard, terms)
            recalibrate_batch_norm(module, train, device, config.batch_size * 8, rng, shard=shard)
            # An autoencoder is selected on what it optimizes, its reconstruction at z = mu
            # (as Li et al. 2019 do; "valid_objective"); the ELBO of its untrained variance means little.
            record.update({f"valid_{k}": v for k, v in shard.validation(
                module, valid, device, config.batch_size * 4, config.precision,
                config.objective == "autoencoder").items()})
            record = shard.broadcast(record)   # rank 0's numbers decide the lr and stopping everywhere
            if not all(math.isfinite(record[key]) for key in ("valid_loss", "valid_objective")
                       if key in record):
                value = record.get("valid_objective", record["valid_loss"])
                raise diverged_error(f"the validation loss became {value:g} (the training loss "
                                     "was finite)", state["epoch"], state["step"],
                                     None, None, optimizer, config)
            check_pre_bn_variance(module, record)
            check_validation_kl(module, record)
            _step_plateau(module, optimizer, state, record, config.lr_patience)
            state["history"].append({k: v if isinstance(v, int) else float(v) for k, v in record.items()})
            state["epoch"] += 1
            state["rng"], state["torch_rng"] = rng.bit_generator.state, torch.get_rng_state()
            if config.verbose:
                tqdm.write(_format_record(record))
            if checkpoint and shard.rank == 0:
                save_checkpoint(checkpoint, module, optimizer, config, state)
            if epoch_callback is not None:
                epoch_callback(dict(state["history"][-1]))
        if state["best_weights"] is not None:
            module.load_state_dict(state["best_weights"])
        elif not state["history"]:  # max_epochs=0: an untrained model, statistics still exact
            recalibrate_batch_norm(module, train, device, config.batch_size * 8, rng, shard=shard)
    module.eval()
    return state["history"]


def recalibrate_batch_norm(module, corpus, device, batch_size, rng, max_texts=50_000, shard=None):
    """Set the running statistics of the batch norm on the means to the exact mean and
    variance over (a sample of) the training texts, at the current weights; with a
    ``shard`` of several processes each encodes its share of the sample and the
    moments are those of the whole sample.

    The moving averages lag behind an encoder whose scale keeps changing, and in
    eval mode a stale running variance scales the means below ``gamma``: the KL
    bound then fails on held-out text. One encoder-only pass fixes that.
    """
    norm = getattr(getattr(module, "mean_norm", None), "norm", None)
    if norm is None:
        return
    shard = shard or SingleProcess()
    indices = np.arange(len(corpus))
    if len(indices) > max_texts:
        indices = np.sort(rng.choice(indices, max_texts, replace=False))
    sample = shard.rows(corpus.subset(indices))
    with eval_mode(module):
        means = torch.cat([module.pre_norm_posterior(*inputs)[0].float()    # (batch, latent), pre-BN
                           for _, inputs in batches(sample, batch_size, device)])
        mean, var = shard.mean_var(means)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)


def train_epoch(module, optimizer, corpus, config, device, rng, epoch, schedule=None, state=None,
                threads=None, shard=None, terms=None):
    """One pretraining epoch over ``corpus`` in length-bucketed batches drawn with ``rng``;
    returns its history record (train loss, reconstruction, KL, KL weight, lr, seconds,
    tokens per second). ``schedule`` and ``state`` carry the KL weight across epochs;
    ``threads`` (an ``AdaptiveThreads``), when given, adjusts the thread count as it goes.
    ``shard`` and ``terms`` (the objective through DDP) train this process's share of
    each batch (see :mod:`ssl_textvae.distributed`); the record is the global batch's."""
    schedule = schedule or KLSchedule.from_config(config, 1)
    state = state if state is not None else {"step": 0}
    shard = shard or SingleProcess()
    terms = terms or functools.partial(objective_terms, module, objective=config.objective)
    weights = []
    module.train()
    batches = shard.batches(corpus.lengths, config.batch_size, rng)
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # summed on the device: no sync per step
    start, thread_steps = time.perf_counter(), 0
    progress = tqdm(batches, desc=f"epoch {epoch + 1}/{config.max_epochs}", leave=False,
                    disable=not config.verbose, unit="batch")
    # On a CPU the finiteness check of each step's loss costs microseconds; on CUDA it
    # would wait for the device at every step, so there it runs every 64 steps.
    check_every = 1 if device.type == "cpu" else 64
    with _update_step(module, optimizer, config, device, plain=shard.world_size > 1) as update:
        for batch_index, (indices, loss_scale) in enumerate(progress):
            inputs = tuple(t.to(device, non_blocking=True) for t in collate(corpus, indices))
            with autocast_context(device, config.precision):
                batch_terms = terms(*inputs)
            weight = schedule(state["step"])
            state["step"] += 1
            weights.append(weight)
            loss = (batch_terms["reconstruction"]
                    + weight * kl_penalty(batch_terms["kl_per_dim"], config.free_bits)).mean()
            # summed over the ranks, so that all of them stop at the same step
            if batch_index % check_every == 0:
                check_loss("the training loss", float(shard.all_sum(loss.detach())), None, epoch,
                           state["step"], batch_index, len(batches), optimizer, config)
            update.zero_grad()
            (loss * loss_scale).backward()
            try:
                update.step()
            except FloatingPointError as error:
                raise diverged_error(str(error), epoch, state["step"], batch_index, len(batches),
                                     optimizer, config) from None
            thread_steps += torch.get_num_threads()
            if threads is not None:
                threads.step()
            size = len(indices)
            totals += size * torch.stack([loss.detach(), batch_terms["reconstruction"].detach().mean(),
                                          batch_terms["kl"].detach().mean(), torch.ones_like(loss)]).double()
    seconds = time.perf_counter() - start
    *sums, n_texts = shard.all_sum(totals).cpu().numpy().astype(float)
    loss, reconstruction, kl = np.asarray(sums) / max(n_texts, 1)
    if not math.isfinite(loss):   # on CUDA, a step between the checks
        raise diverged_error(f"the mean training loss became {loss:g}", epoch, state["step"],
                             None, len(batches), optimizer, config)
    return {"epoch": epoch + 1, "train_loss": loss, "train_reconstruction": reconstruction,
            "train_kl": kl, "kl_weight": float(np.mean(weights)) if weights else schedule(state["step"]),
            "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
            "tokens_per_second": corpus.n_tokens() / seconds,
            "mean_threads": thread_steps / len(batches) if batches else float(torch.get_num_threads())}


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


def _step_plateau(module, optimizer, state, record, patience):
    """Keep the best weights; after ``patience`` epochs without improvement halve
    the learning rate and go back to the best weights."""
    loss = record.get("valid_objective", record["valid_loss"])
    if loss < state["best_loss"] - 1e-4:
        state["best_loss"], state["bad_epochs"] = loss, 0
        state["best_weights"] = copy.deepcopy(module.state_dict())
        return
    state["bad_epochs"] += 1
    if state["bad_epochs"] >= patience:
        state["bad_epochs"] = 0
        state["halvings"] += 1
        for group in optimizer.param_groups:
            group["lr"] *= 0.5
        if state["best_weights"] is not None:
            module.load_state_dict(state["best_weights"])


def _format_record(record):
    keys = ("train_loss", "valid_loss", "valid_reconstruction", "valid_kl", "valid_active_units")
    shown = ", ".join(f"{k} {record[k]:.3f}" for k in keys if k in record)
    return f"epoch {record['epoch']}: {shown}, lr {record['lr']:.3g}, {record['seconds']:.0f}s"
