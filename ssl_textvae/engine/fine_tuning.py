"""Fine-tuning with labels as a task of :mod:`ssl_textvae.engine`, in torch only.

A pretrained encoder (embeddings, LSTM, the layer to the posterior) and a linear
head on its posterior means are trained together on labeled texts with
cross-entropy. The batch norm on the means keeps its pretrained statistics (eval
mode), so the features keep the scale the head was initialized on. The best
weights on the validation labels are kept (the start, epoch 0, competes too); a
plateau of ``patience`` epochs halves the learning rate and reloads them (the
official BN-VAE classifier's schedule), or stops training once ``max_lr_halvings``
halvings are spent: the engine's plateau schedule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import loop as engine
from .checkpoints import data_fingerprint
from ..text.data import EncodedCorpus, collate
from ..nn.inference import run_batched
from ..nn.pretrained import ENCODER_LR

OPTIMIZERS = ("adam", "sgd")
SELECTIONS = ("accuracy", "loss")
FEATURES = ("mean", "hidden")


@dataclass
class FineTuningConfig:
    """The settings of a fine-tuning run, without defaults: a ``FineTunedBNVAEClassifier``
    holds them (``ssl_textvae.estimators.fine_tuned.fine_tuning_config`` builds one)."""
    max_epochs: int
    optimizer: str
    lr: float
    batch_size: int
    clip_grad_norm: Optional[float]
    weight_decay: float
    patience: int
    max_lr_halvings: int
    selection: str
    precision: str
    verbose: int
    # A pretrained transformer encoder trains at this rate (None: pretrained.ENCODER_LR where it has one).
    encoder_lr: Optional[float] = None


class EncoderClassifier(nn.Module):
    """A copy of a ``TextVAE``'s encoder, then a linear layer on its posterior means
    (after the batch norm) or on the LSTM's last state. A pretrained transformer
    encoder (:mod:`ssl_textvae.nn.pretrained`) trains too, whether or not it was frozen in
    pretraining; ``"hidden"`` is then its pooled vector, and ``dropout`` the transformer's own."""

    def __init__(self, vae_module, n_classes, dropout=0.0, features="mean", head_dropout=0.0):
        super().__init__()
        self.encoder = copy.deepcopy(vae_module.encoder)
        self.pretrained = getattr(vae_module, "pretrained_encoder", False)
        if self.pretrained:
            self.encoder.frozen = False
            self.encoder.backbone.requires_grad_(True)
            width = self.encoder.width
        else:
            self.encoder.dropout.p = dropout
            width = self.encoder.lstm.hidden_size
        self.dropout = nn.Dropout(dropout if self.pretrained else 0.0)
        self.mean_norm = copy.deepcopy(vae_module.mean_norm)
        self.features = features
        width = vae_module.latent_dim if features == "mean" else width
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(width, n_classes)

    def representation(self, tokens, lengths, encoder_inputs=None):
        """(batch, width) fp32 features the head reads."""
        if self.pretrained:
            pooled = self.dropout(self.encoder.pool(encoder_inputs))       # ids: the transformer trains
            if self.features == "hidden":
                return pooled
            mean, _ = self.encoder(pooled)
            return self.mean_norm(mean)
        if self.features == "mean":
            mean, _ = self.encoder(tokens, lengths)
            return self.mean_norm(mean)                                   # fp32
        return self.encoder.dropout(self.encoder.last_state(tokens, lengths)).float()

    def forward(self, *inputs):
        return self.head(self.head_dropout(self.representation(*inputs)))  # (batch, classes)

    def train(self, mode=True):
        super().train(mode)
        self.mean_norm.eval()   # pretrained statistics: batches of a few labels would move them
        return self

    def set_head(self, weight, bias):
        """Start the head at ``weight`` (n_classes, width) and ``bias`` (n_classes,)."""
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def logits(module: EncoderClassifier, corpus: EncodedCorpus, device, precision="auto") -> np.ndarray:
    """Class logits of every text in eval mode: float32 array (n_texts, n_classes)."""
    return run_batched(module, corpus, device, module, module.head.out_features, precision=precision)


def features(module: EncoderClassifier, corpus: EncodedCorpus, device, precision="auto") -> np.ndarray:
    """The features the head reads, in eval mode: float32 array (n_texts, width)."""
    return run_batched(module, corpus, device, module.representation, module.head.in_features,
                       precision=precision)


def validate(module, corpus, targets, device, precision="auto"):
    """(accuracy, mean cross-entropy) on labeled texts; ``targets`` are class indices."""
    scores = torch.as_tensor(logits(module, corpus, device, precision))
    labels = torch.as_tensor(targets)
    return float((scores.argmax(1) == labels).float().mean()), float(F.cross_entropy(scores, labels))


class FineTuningTask(engine.Task):
    """Cross-entropy on ``train_targets`` (class indices), selected by validation
    accuracy then loss, or by loss (``config.selection``)."""

    name, validate_start, prefix, explode_check = "Fine-tuning", True, "fine_tuning_", True

    def __init__(self, module, train, train_targets, valid, valid_targets, config, device, seed):
        self.module, self.train, self.valid, self.config, self.device = module, train, valid, config, device
        self.train_targets, self.valid_targets = train_targets, valid_targets
        self.labels = torch.as_tensor(train_targets, device=device)
        self.lengths, self.n_tokens = train.lengths, train.n_tokens()
        self.seed, self.torch_seed = seed, None   # torch's stream is the caller's (it built the head)
        self.patience, self.max_lr_halvings = config.patience, config.max_lr_halvings

    def make_optimizer(self):
        config, module = self.config, self.module
        encoder_lr = (config.encoder_lr or ENCODER_LR) if getattr(module, "pretrained", False) else None
        return engine.make_optimizer(config.optimizer, module.parameters(), config.lr, encoder_lr, module,
                                     config.weight_decay)

    def inputs(self, indices):
        return tuple(t.to(self.device) for t in collate(self.train, indices))

    def loss(self, scores, indices, kl_weight):
        # scores: (batch, classes)
        return F.cross_entropy(scores.float(), self.labels[torch.as_tensor(indices, device=self.device)]), []

    def validate(self):
        accuracy, loss = validate(self.module, self.valid, self.valid_targets, self.device, self.config.precision)
        return {"valid_loss": loss, "valid_accuracy": accuracy}

    def score(self, record):
        if self.config.selection == "loss":
            return (-record["valid_loss"],)
        return (record["valid_accuracy"], -record["valid_loss"])

    def describe(self, record):
        return (f"fine-tuning epoch {record['epoch']}: train_loss {record['train_loss']:.4f}, "
                f"valid_loss {record['valid_loss']:.4f}, valid_accuracy {record['valid_accuracy']:.4f}, "
                f"lr {record['lr']:.3g}")

    def fingerprint(self):
        return data_fingerprint(self.train, self.valid, self.train_targets, self.valid_targets)


def fine_tune(module: EncoderClassifier, train: EncodedCorpus, train_targets, valid: EncodedCorpus,
              valid_targets, config: FineTuningConfig, device, seed, checkpoint_dir=None):
    """Train ``module`` in place; return ``(history, best_epoch)``, the module holding
    the best weights (epoch 0, the start, competes too). Batch order is drawn from a
    numpy generator seeded with ``seed``; torch's RNG is the caller's. With a
    ``checkpoint_dir`` each epoch is saved there and a run found there resumes."""
    task = FineTuningTask(module, train, train_targets, valid, valid_targets, config, device, seed)
    state = engine.fit(task, checkpoint_dir)
    return state["history"], state["best_epoch"]
