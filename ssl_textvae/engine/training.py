"""Pretraining as a task of :mod:`ssl_textvae.engine`, in torch only: the ELBO (or an
autoencoder's reconstruction) with a KL schedule and free bits, batch-norm
recalibration after each epoch, the validation ELBO that halves the learning rate on
a plateau (Zhu et al. / He et al.) and selects the weights; the engine's loop,
checkpoints and divergence check do the rest.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .checkpoints import data_fingerprint
from ..runtime.matmul import Workload
from ..text.data import EncodedCorpus, collate, n_batches
from .diagnostics import check_pre_bn_variance, check_validation_kl
from .distributed import SingleProcess, current_shard
from . import loop as engine

OPTIMIZERS = ("sgd", "adam")
OBJECTIVES = ("vae", "autoencoder")
KL_SCHEDULES = ("constant", "linear", "cyclical")


@dataclass
class TrainingConfig:
    """The settings of a pretraining run. No field repeats a default: a ``BNVAE`` holds
    them (``ssl_textvae.estimators.bnvae.training_config`` builds one from its parameters)."""
    optimizer: str
    lr: float
    batch_size: int
    max_epochs: int
    clip_grad_norm: Optional[float]
    lr_patience: int
    max_lr_halvings: int
    precision: str
    seed: int
    verbose: int
    # Collapse remedies (see KLSchedule and kl_penalty).
    objective: str
    kl_schedule: str
    kl_start: float
    kl_warmup_steps: int
    kl_cycles: int
    kl_cycle_ratio: float
    free_bits: float
    # Learning rate of a pretrained transformer encoder that trains (None: none trains);
    # the LSTM decoder and the posterior layer keep ``lr``.
    encoder_lr: Optional[float]
    # Intra-op CPU threads: None adapts to the CPUs other processes leave free (see
    # ssl_textvae.runtime.threads; SSL_TEXTVAE_NUM_THREADS fixes it). A setting of the machine,
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


class PretrainingTask(engine.Task):
    """Pretraining of a ``TextVAE`` on ``train``, selected on ``valid`` (either may be
    None for a task that only trains epochs)."""

    name, terms, checked = "Pretraining", ("reconstruction", "kl"), ("valid_loss", "valid_objective")
    min_delta, fused_sgd = 1e-4, True

    def __init__(self, module, train, valid, config: "TrainingConfig", device, shard=None,
                 schedule=None, terms=None):
        self.module, self.train, self.valid, self.config, self.device = module, train, valid, config, device
        self.shard = shard or SingleProcess()
        self.lengths, self.n_tokens = train.lengths, train.n_tokens()
        self.seed = self.torch_seed = config.seed
        self.patience, self.max_lr_halvings, self.n_threads = (config.lr_patience, config.max_lr_halvings,
                                                               config.n_threads)
        self.schedule = schedule or KLSchedule.from_config(
            config, n_batches(len(train), config.batch_size, self.shard.min_batch_size))
        self.terms_of = terms or functools.partial(objective_terms, module, objective=config.objective)

    def make_optimizer(self):
        return engine.make_optimizer(self.config.optimizer, self.module.parameters(), self.config.lr,
                                     self.config.encoder_lr, self.module)

    def inputs(self, indices):
        return tuple(t.to(self.device, non_blocking=True) for t in collate(self.train, indices))

    def forward(self, *inputs):
        return self.terms_of(*inputs)

    def kl_weight(self, step):
        return self.schedule(step)

    def loss(self, terms, indices, kl_weight):
        loss = (terms["reconstruction"] + kl_weight * kl_penalty(terms["kl_per_dim"], self.config.free_bits)).mean()
        return loss, [terms["reconstruction"].mean(), terms["kl"].mean()]

    def after_epoch(self, rng):
        engine.recalibrate_batch_norm(self.module, self.train, self.device, self.config.batch_size * 8, rng,
                                      shard=self.shard)

    def validate(self):
        # An autoencoder is selected on what it optimizes, its reconstruction at z = mu
        # (as Li et al. 2019 do; "valid_objective"); the ELBO of its untrained variance means little.
        config = self.config
        return {f"valid_{k}": v for k, v in self.shard.validation(
            self.module, self.valid, self.device, config.batch_size * 4, config.precision,
            config.objective == "autoencoder").items()}

    def inspect(self, record, state):
        check_pre_bn_variance(self.module, record)
        check_validation_kl(self.module, record)

    def score(self, record):
        return (-record.get("valid_objective", record["valid_loss"]),)

    def describe(self, record):
        keys = ("train_loss", "valid_loss", "valid_reconstruction", "valid_kl", "valid_active_units")
        shown = ", ".join(f"{k} {record[k]:.3f}" for k in keys if k in record)
        return f"epoch {record['epoch']}: {shown}, lr {record['lr']:.3g}, {record['seconds']:.0f}s"

    def fingerprint(self):
        return data_fingerprint(self.train, self.valid)

    def matmul_workload(self):
        # The output layer over a batch's tokens (words and </s>); the decoder's LSTM reads as
        # many steps, the encoder's one more (a pretrained encoder's products are not timed).
        decoder, lstms = self.module.decoder, 1 if self.module.pretrained_encoder else 2
        output = getattr(decoder.output, "head", decoder.output)   # adaptive softmax: its head
        tokens = self.n_tokens / max(len(self.lengths), 1)          # per text
        return Workload(rows=max(1, round(self.config.batch_size * tokens)), in_features=output.in_features,
                        out_features=output.out_features, batch=self.config.batch_size,
                        steps=tokens + (lstms - 1) / 2, lstms=lstms, lstm_input=decoder.lstm.input_size,
                        lstm_hidden=decoder.lstm.hidden_size)


def pretrain(module, train: EncodedCorpus, valid: EncodedCorpus, config: TrainingConfig,
             device: torch.device, checkpoint_dir: Optional[str] = None,
             epoch_callback: Optional[Callable[[dict], None]] = None):
    """Train ``module`` in place; return the per-epoch history (a list of dicts).

    Global RNGs are left as they were: torch's are forked, numpy's is a local Generator.
    ``epoch_callback(record)``, when given, is called after each epoch (and its
    checkpoint) with that epoch's history entry; an exception it raises stops
    training and propagates (a tuner uses this to prune a trial).

    In a process group of 2 or more (``torchrun``, see :mod:`ssl_textvae.engine.distributed`)
    every rank calls this with the same data and settings: ``config.batch_size`` is
    the global batch, rank 0 alone writes the checkpoint, and every rank returns the
    same history and weights.
    """
    task = PretrainingTask(module, train, valid, config, device, current_shard())
    return engine.fit(task, checkpoint_dir, epoch_callback)["history"]


def train_epoch(module, optimizer, corpus, config, device, rng, epoch=0, shard=None, terms=None):
    """One pretraining epoch of ``module`` on ``corpus`` (its record), outside a run:
    ``shard`` and ``terms`` (the objective through DDP) train this process's share of
    each batch (see :mod:`ssl_textvae.engine.distributed`)."""
    task = PretrainingTask(module, corpus, None, config, device, shard, KLSchedule.from_config(config, 1))
    return engine.train_epoch(task, optimizer, {"epoch": epoch, "step": 0}, rng, forward=terms)
