"""The fine-tuning loop, in torch only, beside the pretraining loop of ``training.py``.

A pretrained encoder (embeddings, LSTM, the layer to the posterior) and a linear
head on its posterior means are trained together on labeled texts with
cross-entropy. The batch norm on the means keeps its pretrained statistics (eval
mode), so the features keep the scale the head was initialized on. The best
weights on the validation labels are kept; a plateau of ``patience`` epochs
halves the learning rate and reloads them (the official BN-VAE classifier's
schedule), or stops training once ``max_lr_halvings`` halvings are spent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .data import EncodedCorpus, bucket_batches, collate
from .diagnostics import check_loss
from .inference import run_batched
from .runtime import autocast_context
from .threads import cpu_threads

OPTIMIZERS = ("adam", "sgd")
SELECTIONS = ("accuracy", "loss")
FEATURES = ("mean", "hidden")


@dataclass
class FineTuningConfig:
    max_epochs: int = 20
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    clip_grad_norm: Optional[float] = None
    weight_decay: float = 0.0
    patience: int = 3
    max_lr_halvings: int = 0
    selection: str = "accuracy"
    precision: str = "auto"
    verbose: int = 1
    # A pretrained transformer encoder trains at this rate (None: it has none).
    encoder_lr: Optional[float] = None


class EncoderClassifier(nn.Module):
    """A copy of a ``TextVAE``'s encoder, then a linear layer on its posterior means
    (after the batch norm) or on the LSTM's last state. A pretrained transformer
    encoder (:mod:`ssl_textvae.pretrained`) trains too, whether or not it was frozen in
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


def fine_tune(module: EncoderClassifier, train: EncodedCorpus, train_targets, valid: EncodedCorpus,
              valid_targets, config: FineTuningConfig, device, seed):
    """Train ``module`` in place; return ``(history, best_epoch)``, the module holding
    the best weights (epoch 0, the start, competes too). Batch order is drawn from a
    numpy generator seeded with ``seed``; torch's RNG is the caller's. A training loss
    that is not finite or explodes (:func:`~ssl_textvae.diagnostics.divergence`, against
    the starting validation loss) raises ``TrainingDivergedError`` before its update."""
    make = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    groups = [{"params": list(module.parameters())}]
    if getattr(module, "pretrained", False):   # the transformer at its own, far smaller rate
        backbone = {id(p) for p in module.encoder.backbone.parameters()}
        groups = [{"params": [p for p in module.parameters() if id(p) not in backbone]},
                  {"params": list(module.encoder.backbone.parameters()),
                   "lr": config.encoder_lr or 2e-5}]
    optimizer = make(groups, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(seed)
    labels = torch.as_tensor(train_targets, device=device)

    def score(accuracy, loss):   # larger is better
        return (-loss,) if config.selection == "loss" else (accuracy, -loss)

    with cpu_threads(device) as threads:   # the free CPUs, as in pretraining
        start = validate(module, valid, valid_targets, device, config.precision)
        best = (score(*start), 0, copy.deepcopy(module.state_dict()))
        history, bad_epochs, halvings, step = [], 0, 0, 0
        diverged = dict(task="Fine-tuning", prefix="fine_tuning_", checkpoints=False)
        for epoch in range(1, config.max_epochs + 1):
            module.train()
            total = torch.zeros((), dtype=torch.float64, device=device)  # no sync per step
            count = 0
            batches = bucket_batches(train.lengths, config.batch_size, shuffle=True, rng=rng)
            for batch_index, indices in enumerate(tqdm(
                    batches, desc=f"fine-tuning {epoch}/{config.max_epochs}", leave=False,
                    disable=not config.verbose, unit="batch")):
                inputs = tuple(t.to(device) for t in collate(train, indices))
                with autocast_context(device, config.precision):
                    scores = module(*inputs)                                  # (batch, classes)
                loss = F.cross_entropy(scores.float(), labels[torch.as_tensor(indices, device=device)])
                step += 1
                check_loss("the training loss", float(loss.detach()), start[1], epoch - 1, step,
                           batch_index, len(batches), optimizer, config, **diverged)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip_grad_norm is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), config.clip_grad_norm)
                optimizer.step()
                threads.step()
                total += loss.detach().double() * len(indices)
                count += len(indices)
            accuracy, valid_loss = validate(module, valid, valid_targets, device, config.precision)
            check_loss("the validation loss", valid_loss, start[1], epoch - 1, step, None,
                       len(batches), optimizer, config, **diverged)
            lr = optimizer.param_groups[0]["lr"]
            history.append({"epoch": epoch, "train_loss": float(total) / max(count, 1),
                            "valid_loss": valid_loss, "valid_accuracy": accuracy, "lr": lr})
            if config.verbose:
                tqdm.write(f"fine-tuning epoch {epoch}: train_loss {history[-1]['train_loss']:.4f}, "
                           f"valid_loss {valid_loss:.4f}, valid_accuracy {accuracy:.4f}, lr {lr:.3g}")
            if score(accuracy, valid_loss) > best[0]:
                best, bad_epochs = (score(accuracy, valid_loss), epoch, copy.deepcopy(module.state_dict())), 0
                continue
            bad_epochs += 1
            if bad_epochs < config.patience:
                continue
            if halvings == config.max_lr_halvings:
                break
            # The plateau schedule of the official code: back to the best weights, half the step.
            halvings, bad_epochs = halvings + 1, 0
            module.load_state_dict(best[2])
            for group in optimizer.param_groups:
                group["lr"] /= 2
    module.load_state_dict(best[2])
    module.eval()
    return history, best[1]
