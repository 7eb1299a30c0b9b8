"""Batches of (context, response) pairs and the training of the conditional VAE as a
task of :mod:`ssl_textvae.engine`, in torch and numpy only (the estimator,
:mod:`ssl_textvae.dialogue`, joins this to scikit-learn).

Adam with gradient-norm clipping (Zhao et al.'s optimizer), one z per pair, a linear
KL warm-up, the per-epoch validation negative ELBO (reconstruction + KL(q || p), the
bound every variant shares) to keep the best weights and stop early, exact
batch-norm running statistics after each epoch; the engine adds the checkpoints
that resume, the divergence check, tqdm progress and the per-epoch history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..engine import loop as engine
from ..engine.checkpoints import data_fingerprint
from .cvae import training_loss
from ..text.data import EncodedCorpus, bucket_batches, collate
from ..nn.inference import eval_mode
from ..runtime.devices import autocast_context
from ..engine.training import KLSchedule

TERMS = ("reconstruction", "kl", "prior_kl", "posterior_kl", "bow")


class DialogueCorpus:
    """Token ids of (context, response) pairs: the context utterances of all pairs,
    context after context, in one :class:`~ssl_textvae.text.data.EncodedCorpus`, with
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
        """Tensors for :class:`~ssl_textvae.dialogue.cvae.ConditionalVAE`: utterances (n_utt, time),
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


class DialogueTask(engine.Task):
    """The conditional VAE's loss (:func:`~ssl_textvae.dialogue.cvae.training_loss`) on
    ``train``, selected and stopped (after ``n_iter_no_change`` epochs without a better
    validation negative ELBO) on ``valid``."""

    name, terms, explode_check = "Dialogue training", TERMS, True

    def __init__(self, module, train: DialogueCorpus, valid: DialogueCorpus, config, device):
        self.module, self.train, self.valid, self.config, self.device = module, train, valid, config, device
        self.lengths, self.n_tokens = train.response_lengths, train.n_tokens()
        self.seed = self.torch_seed = config.seed
        self.patience, self.max_lr_halvings = config.n_iter_no_change, 0
        # the weight reaches 1 at step kl_warmup_steps - 1, the first step weighs 1 / kl_warmup_steps
        kind = "linear" if config.kl_warmup_steps else "constant"
        self.schedule = KLSchedule(kind, 0.0, config.kl_warmup_steps)

    def make_optimizer(self):
        return engine.make_optimizer("adam", self.module.parameters(), self.config.lr)

    def inputs(self, indices):
        return self.train.batch(indices, self.device)

    def kl_weight(self, step):
        return self.schedule(step + 1)

    def loss(self, terms, indices, kl_weight):
        loss = training_loss(terms, kl_weight, self.config.prior_penalty)
        return loss, [terms[key].mean() for key in TERMS]

    def after_epoch(self, rng):
        recalibrate_batch_norm(self.module, self.train, self.device, self.config.batch_size * 4, rng,
                               self.config.precision)

    def validate(self):
        valid = evaluate_terms(self.module, self.valid, self.device, self.config.batch_size * 2,
                               self.config.precision)
        return {f"valid_{k}": v for k, v in valid.items()}

    def inspect(self, record, state):
        record["steps"] = state["step"]

    def describe(self, record):
        return (f"epoch {record['epoch']}: train loss {record['train_loss']:.2f}, valid "
                f"-ELBO {record['valid_loss']:.2f}, KL(q||p) {record['valid_kl']:.2f}, "
                f"PPL {record['valid_perplexity']:.1f}, {record['seconds']:.0f}s")

    def fingerprint(self):
        contexts = [array for corpus in (self.train, self.valid)
                    for array in (corpus.context_offsets, corpus.utterances.offsets, corpus.utterances.ids)]
        return data_fingerprint(self.train.responses, self.valid.responses, *contexts)


def train(module, train_corpus: DialogueCorpus, valid_corpus: DialogueCorpus,
          config: DialogueTrainingConfig, device, checkpoint_dir=None) -> List[dict]:
    """Train ``module`` in place; keep the weights of the best validation negative ELBO;
    return the per-epoch history. Global RNGs are left as they were."""
    return engine.fit(DialogueTask(module, train_corpus, valid_corpus, config, device), checkpoint_dir)["history"]


def evaluate_terms(module, corpus: DialogueCorpus, device, batch_size=128, precision="auto", seed=0):
    """Averages per pair over ``corpus`` in eval mode (one z ~ q per pair, drawn with a
    seeded generator): ``loss`` = reconstruction + KL(q || p) (the negative ELBO),
    each term of :meth:`ConditionalVAE.forward`, and ``perplexity`` = exp(reconstruction
    per token), ``elbo_perplexity`` = exp(negative ELBO per token), an upper bound of
    the true perplexity."""
    sums = dict.fromkeys(TERMS, 0.0)
    with eval_mode(module), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for indices in bucket_batches(corpus.response_lengths, batch_size, shuffle=False):
            with autocast_context(device, precision):
                terms = module(*corpus.batch(indices, device))
            for key in TERMS:
                sums[key] += float(terms[key].double().sum())
    n_pairs, n_tokens = max(len(corpus), 1), max(corpus.n_tokens(), 1)
    result = {key: value / n_pairs for key, value in sums.items()}
    result["loss"] = result["reconstruction"] + result["kl"]
    result["perplexity"] = math.exp(sums["reconstruction"] / n_tokens)
    result["elbo_perplexity"] = math.exp((sums["reconstruction"] + sums["kl"]) / n_tokens)
    return result


def recalibrate_batch_norm(module, corpus: DialogueCorpus, device, batch_size, rng, precision="auto",
                           max_pairs=5_000):
    """:func:`ssl_textvae.engine.loop.recalibrate_batch_norm` on mu_q over (a sample of) the
    training pairs, in the precision the model is evaluated in."""
    def batches_of(sample):
        return (sample.batch(indices, device)
                for indices in bucket_batches(sample.response_lengths, batch_size, shuffle=False))

    engine.recalibrate_batch_norm(module, corpus, device, batch_size, rng, max_pairs, precision=precision,
                                  batches_of=batches_of)
