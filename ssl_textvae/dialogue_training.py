"""Batches of (context, response) pairs and the training loop of the conditional VAE,
in torch and numpy only (the estimator, :mod:`ssl_textvae.dialogue`, joins this to
scikit-learn).

Adam with gradient-norm clipping (Zhao et al.'s optimizer), one z per pair, the
per-epoch validation negative ELBO (reconstruction + KL(q || p), the bound every
variant shares) to keep the best weights and stop early, exact batch-norm running
statistics after each epoch (as :mod:`ssl_textvae.training` does for BN-VAE), a
checkpoint per epoch that resumes, tqdm progress and a per-epoch history.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .cvae import training_loss
from .data import EncodedCorpus, bucket_batches, collate
from .diagnostics import check_loss
from .runtime import autocast_context, flush_denormals
from .checkpoints import check_same_module, restore_rngs, rng_to_tensor, tensor_to_rng

CHECKPOINT_NAME = "bncvae_checkpoint.pt"
TERMS = ("reconstruction", "kl", "prior_kl", "posterior_kl", "bow")


class DialogueCorpus:
    """Token ids of (context, response) pairs: the context utterances of all pairs,
    context after context, in one :class:`~ssl_textvae.data.EncodedCorpus`, with
    ``context_offsets`` (n_pairs + 1) into its rows, and the responses in another."""

    def __init__(self, utterances: EncodedCorpus, context_offsets: np.ndarray, responses: EncodedCorpus):
        self.utterances, self.context_offsets, self.responses = utterances, context_offsets, responses

    @classmethod
    def from_texts(cls, tokenizer, contexts: Sequence[Sequence[str]], responses: Sequence[str]):
        sizes = np.fromiter((len(c) for c in contexts), dtype=np.int64, count=len(contexts))
        offsets = np.zeros(len(contexts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        utterances = EncodedCorpus.from_texts(tokenizer, [u for c in contexts for u in c])
        return cls(utterances, offsets, EncodedCorpus.from_texts(tokenizer, list(responses)))

    def __len__(self):
        return len(self.responses)

    @property
    def response_lengths(self) -> np.ndarray:
        return self.responses.lengths

    def n_tokens(self) -> int:
        """Predicted tokens: the responses' words plus one ``</s>`` each."""
        return int(self.responses.lengths.sum()) + len(self)

    def subset(self, indices) -> "DialogueCorpus":
        indices = np.asarray(indices, dtype=np.int64)
        rows = _context_rows(self.context_offsets, indices)
        sizes = np.diff(self.context_offsets)[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return DialogueCorpus(self.utterances.subset(rows), offsets, self.responses.subset(indices))

    def batch(self, indices, device):
        """Tensors for :class:`~ssl_textvae.cvae.ConditionalVAE`: utterances (n_utt, time),
        their lengths (n_utt,), floors (n_utt,), context sizes (batch,), response
        (batch, time) and its lengths (batch,), each with ``<s>`` and ``</s>``."""
        indices = np.asarray(indices, dtype=np.int64)
        sizes = np.diff(self.context_offsets)[indices]                        # (batch,)
        utterances, lengths = collate(self.utterances, _context_rows(self.context_offsets, indices))
        # the last utterance of a context is the other speaker's (floor 1), the one before
        # it the responder's (floor 0), and so on back
        position = np.concatenate([np.arange(size) for size in sizes])
        floors = (np.repeat(sizes, sizes) - position) % 2
        response, response_lengths = collate(self.responses, indices)
        tensors = (utterances, lengths, torch.from_numpy(floors), torch.from_numpy(sizes), response,
                   response_lengths)
        return tuple(t.to(device, non_blocking=True) for t in tensors)


def _context_rows(offsets, indices):
    starts, sizes = offsets[indices], offsets[indices + 1] - offsets[indices]
    return np.repeat(starts - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes) + np.arange(sizes.sum())


@dataclass
class DialogueTrainingConfig:
    lr: float
    batch_size: int
    max_epochs: int
    clip_grad_norm: Optional[float]
    n_iter_no_change: int
    kl_warmup_steps: int
    prior_penalty: bool
    precision: str
    seed: int
    verbose: int


def train(module, train_corpus: DialogueCorpus, valid_corpus: DialogueCorpus,
          config: DialogueTrainingConfig, device, checkpoint_dir=None) -> List[dict]:
    """Train ``module`` in place; keep the weights of the best validation negative ELBO;
    return the per-epoch history. Global RNGs are left as they were."""
    module.to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    state = {"epoch": 0, "step": 0, "history": [], "best_loss": math.inf, "bad_epochs": 0,
             "best_weights": None, "torch_rng": None,
             "rng": np.random.default_rng(config.seed).bit_generator.state}
    checkpoint = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir else None
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    if checkpoint and os.path.exists(checkpoint):
        state = _load_checkpoint(checkpoint, module, optimizer, config)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), flush_denormals():
        rng = restore_rngs(state, config.seed)
        while state["epoch"] < config.max_epochs and state["bad_epochs"] < config.n_iter_no_change:
            record = _train_epoch(module, optimizer, train_corpus, config, device, rng, state)
            recalibrate_batch_norm(module, train_corpus, device, config.batch_size * 4, rng, config.precision)
            valid = evaluate_terms(module, valid_corpus, device, config.batch_size * 2, config.precision)
            record.update({f"valid_{k}": v for k, v in valid.items()})
            if record["valid_loss"] < state["best_loss"]:
                state["best_loss"], state["bad_epochs"] = record["valid_loss"], 0
                state["best_weights"] = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                state["bad_epochs"] += 1
            state["history"].append({k: v if isinstance(v, int) else float(v) for k, v in record.items()})
            state["epoch"] += 1
            state["rng"], state["torch_rng"] = rng.bit_generator.state, torch.get_rng_state()
            if config.verbose:
                tqdm.write(f"epoch {record['epoch']}: train loss {record['train_loss']:.2f}, valid "
                           f"-ELBO {record['valid_loss']:.2f}, KL(q||p) {record['valid_kl']:.2f}, "
                           f"PPL {record['valid_perplexity']:.1f}, {record['seconds']:.0f}s")
            if checkpoint:
                _save_checkpoint(checkpoint, module, optimizer, config, state)
        if state["best_weights"] is not None:
            module.load_state_dict(state["best_weights"])
        elif not state["history"]:  # max_epochs=0: untrained, but its statistics still exact
            recalibrate_batch_norm(module, train_corpus, device, config.batch_size * 4, rng, config.precision)
    module.eval()
    return state["history"]


def _train_epoch(module, optimizer, corpus, config, device, rng, state):
    """One epoch; a loss that is not finite or explodes against the first of this run
    raises ``TrainingDivergedError`` before its update, as in pretraining."""
    module.train()
    batches = bucket_batches(corpus.response_lengths, config.batch_size, shuffle=True, rng=rng)
    totals = np.zeros(1 + len(TERMS))
    start, n_pairs, weights = time.perf_counter(), 0, []
    progress = tqdm(batches, desc=f"epoch {state['epoch'] + 1}/{config.max_epochs}", leave=False,
                    disable=not config.verbose, unit="batch")
    for batch_index, indices in enumerate(progress):
        inputs = corpus.batch(indices, device)
        weight = min(1.0, (state["step"] + 1) / config.kl_warmup_steps) if config.kl_warmup_steps else 1.0
        with autocast_context(device, config.precision):
            terms = module(*inputs)
        loss = training_loss(terms, weight, config.prior_penalty)
        value = loss.item()
        state.setdefault("start_loss", value)   # not checkpointed: a resumed run starts again
        check_loss("the training loss", value, state["start_loss"], state["epoch"], state["step"] + 1,
                   batch_index, len(batches), optimizer, config, task="Dialogue training")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(module.parameters(), config.clip_grad_norm)
        optimizer.step()
        state["step"] += 1
        weights.append(weight)
        size = len(indices)
        totals += size * np.array([value] + [terms[k].detach().mean().item() for k in TERMS])
        n_pairs += size
    totals /= max(n_pairs, 1)
    record = {"epoch": state["epoch"] + 1, "train_loss": totals[0]}
    record.update({f"train_{k}": v for k, v in zip(TERMS, totals[1:])})
    record.update({"kl_weight": float(np.mean(weights)) if weights else 1.0, "steps": state["step"],
                   "seconds": time.perf_counter() - start})
    return record


def evaluate_terms(module, corpus: DialogueCorpus, device, batch_size=128, precision="auto", seed=0):
    """Averages per pair over ``corpus`` in eval mode (one z ~ q per pair, drawn with a
    seeded generator): ``loss`` = reconstruction + KL(q || p) (the negative ELBO),
    each term of :meth:`ConditionalVAE.forward`, and ``perplexity`` = exp(reconstruction
    per token), ``elbo_perplexity`` = exp(negative ELBO per token), an upper bound of
    the true perplexity."""
    was_training = module.training
    module.eval()
    sums = dict.fromkeys(TERMS, 0.0)
    with torch.no_grad(), torch.random.fork_rng(devices=[]), flush_denormals():
        torch.manual_seed(seed)
        for indices in bucket_batches(corpus.response_lengths, batch_size, shuffle=False):
            with autocast_context(device, precision):
                terms = module(*corpus.batch(indices, device))
            for key in TERMS:
                sums[key] += float(terms[key].double().sum())
    module.train(was_training)
    n_pairs, n_tokens = max(len(corpus), 1), max(corpus.n_tokens(), 1)
    result = {key: value / n_pairs for key, value in sums.items()}
    result["loss"] = result["reconstruction"] + result["kl"]
    result["perplexity"] = math.exp(sums["reconstruction"] / n_tokens)
    result["elbo_perplexity"] = math.exp((sums["reconstruction"] + sums["kl"]) / n_tokens)
    return result


def recalibrate_batch_norm(module, corpus: DialogueCorpus, device, batch_size, rng, precision="auto",
                           max_pairs=5_000):
    """Set the running statistics of the batch norm on mu_q to the exact mean and variance
    over (a sample of) the training pairs at the current weights, in the precision the
    model is evaluated in; the moving averages lag behind a changing encoder (see
    :func:`ssl_textvae.training.recalibrate_batch_norm`)."""
    norm = getattr(getattr(module, "mean_norm", None), "norm", None)
    if norm is None:
        return
    indices = np.arange(len(corpus))
    if len(indices) > max_pairs:
        indices = np.sort(rng.choice(indices, max_pairs, replace=False))
    was_training = module.training
    module.eval()
    means = []
    with torch.no_grad():
        for batch in bucket_batches(corpus.response_lengths[indices], batch_size, shuffle=False):
            utterances, lengths, floors, sizes, response, response_lengths = corpus.batch(indices[batch], device)
            with autocast_context(device, precision):
                context = module.encode_context(utterances, lengths, floors, sizes)
                means.append(module.pre_norm_posterior_mean(context, response, response_lengths).float())
        means = torch.cat(means)                                             # (pairs, latent)
        norm.running_mean.copy_(means.mean(0))
        norm.running_var.copy_(means.var(0))
    module.train(was_training)


def _save_checkpoint(path, module, optimizer, config, state):
    payload = {"module": module.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(config),
               **{k: v for k, v in state.items() if k != "rng"}, "rng": rng_to_tensor(state["rng"]),
               "best_loss": float(state["best_loss"])}
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint


def _load_checkpoint(path, module, optimizer, config):
    payload = torch.load(path, map_location="cpu", weights_only=True)
    saved, current = dict(payload["config"]), asdict(config)
    for key in ("verbose", "max_epochs"):
        saved.pop(key), current.pop(key)
    if saved != current:
        raise ValueError(f"The checkpoint in {os.path.dirname(path)!r} was written with another training "
                         f"configuration ({saved}); expected {current}. Use another checkpoint_dir or "
                         "delete the checkpoint.")
    check_same_module(path, module, payload["module"])  # sizes, vocabulary and gamma
    module.load_state_dict(payload["module"])
    optimizer.load_state_dict(payload["optimizer"])
    state = {k: payload[k] for k in ("epoch", "step", "history", "best_loss", "bad_epochs", "best_weights",
                                     "torch_rng")}
    state["rng"] = tensor_to_rng(payload["rng"])
    return state
