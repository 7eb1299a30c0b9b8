"""Settings picked from what the pretraining texts look like.

The reference settings of :class:`~ssl_textvae.BNVAE` (embeddings 128, LSTMs of 512,
whole vocabulary, up to 20 epochs) were measured on short Yelp: 175,000 pre-tokenized
sentences. A user's pool is often a few thousand raw texts, on which they are slow and
over-sized. :func:`describe_texts` measures a pool once (size, length, raw or
pre-tokenized) and :func:`data_dependent_params` turns that into ``BNVAE`` parameters;
:func:`auto_vae` does both and returns an unfitted ``BNVAE`` whose ``get_params``
shows every chosen value (nothing is resolved later, so a saved and loaded model
answers ``get_params`` as the one that was fitted).

:func:`small_pool_search_space` is the matching search space for
:func:`ssl_textvae.tuning.tune`.

The rules, and which were measured (``recipes/README.md``, "Few-label benchmark"): the
tokenizer and the epoch count by ``recipes/pool_settings.py`` (cross-validated accuracy of a
head on the frozen means of the labeled texts, never a test set); the model size, vocabulary
size and length cut are cost rules, so that pretraining on a pool of 10,000 texts takes
minutes on 2 CPU cores rather than hours.

* **Tokenizer.** Text whose punctuation is split off by spaces ("accounts ." rather than
  "accounts.") or has none is pre-tokenized: word-level vocabulary, words seen once map
  to ``<unk>`` (``min_frequency=2``). Raw text gets a BPE vocabulary, so "refund?" and
  "refund" share their subwords. On sms_spam (raw), BPE reached 98.0% cross-validated
  accuracy at 1,000 labels after 8 epochs, words 88.7%.
* **Vocabulary size.** BPE: about one subword per 25 tokens of text, between 2,000 and
  16,000. Word-level: at most 30,000 words.
* **Model size.** A pool under 20,000 texts gets embeddings of 64 and LSTMs of 128;
  under 100,000 texts, 128 and 256; larger pools the reference 128 and 512.
* **Epochs.** About a million tokens of pretraining: ``ceil(1e6 / n_tokens)`` epochs,
  between 3 and 20 (a 10,000-text pool of 12 words a text gets 9 epochs); early
  stopping (``lr_patience``, ``max_lr_halvings``) still ends a run that stops improving.
  On sms_spam (15 epochs) the cross-validated accuracy rose from 87.3% after one epoch
  and 93.3% after three to 98.0% after eight, then stayed within 0.4 points.
* **Length.** Texts are cut at 64 tokens when a twentieth of them are longer, so a few
  long documents do not set the cost of every batch.

Everything else keeps the ``BNVAE`` default; any parameter passed to :func:`auto_vae`
wins over the rule.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np

from sklearn.base import clone

from .estimators.bnvae import BNVAE
from .runtime.devices import resolve_device, resolve_precision
from .text.inputs import iterate_texts

__all__ = ["auto_vae", "data_dependent_params", "describe_texts", "native_precision", "small_pool_search_space",
           "texts_for_minutes"]

# Punctuation glued to a word ("bed...", "Please,", "(free"): raw text writes it so,
# tokenized corpora separate it.
_GLUED_PUNCTUATION = re.compile(r"^\w.*[.,!?;:)\"']$|^[(\"]\w")
PRETOKENIZED_MAX_GLUED = 0.01
SMALL_POOL, MEDIUM_POOL = 20_000, 100_000
TARGET_TOKENS = 1_000_000
LONG_TEXT_TOKENS = 64


def describe_texts(texts, sample_size=20_000):
    """Size and shape of a pretraining pool.

    Parameters
    ----------
    texts : list of str or re-iterable of str
        The pretraining texts (a list, :class:`~ssl_textvae.TextFile`, ...).
    sample_size : int, default=20000
        Lengths are counted on every text; punctuation is inspected on the first
        ``sample_size`` texts only.

    Returns
    -------
    dict
        ``n_texts``, ``n_tokens`` (whitespace tokens), ``mean_tokens``,
        ``p95_tokens``, ``glued_punctuation`` (share of tokens with punctuation
        attached to a word, in the sample) and ``pretokenized`` (that share under
        1%).
    """
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or sample_size < 1:
        raise ValueError(f"sample_size must be an int >= 1, got {sample_size!r}.")
    lengths, glued, sampled = [], 0, 0
    for index, text in enumerate(iterate_texts(texts)):
        tokens = text.split()
        if not tokens:
            continue
        lengths.append(len(tokens))
        if index < sample_size:
            sampled += len(tokens)
            glued += sum(1 for token in tokens if len(token) > 1 and _GLUED_PUNCTUATION.search(token))
    if not lengths:
        raise ValueError("Found no non-empty text; expected pretraining texts.")
    lengths = np.asarray(lengths)
    share = glued / max(sampled, 1)
    return {"n_texts": int(len(lengths)), "n_tokens": int(lengths.sum()),
            "mean_tokens": round(float(lengths.mean()), 2),
            "p95_tokens": float(np.percentile(lengths, 95)),
            "glued_punctuation": round(share, 4), "pretokenized": bool(share < PRETOKENIZED_MAX_GLUED)}


def data_dependent_params(description):
    """``BNVAE`` parameters for a pool described by :func:`describe_texts` (the rules
    in this module's docstring). Returns a dict of ``BNVAE`` keyword arguments."""
    missing = {"n_texts", "n_tokens", "p95_tokens", "pretokenized"} - set(description)
    if missing:
        raise ValueError(f"description lacks {sorted(missing)}; pass what describe_texts returns.")
    n_texts, n_tokens = description["n_texts"], description["n_tokens"]
    if n_texts < 1 or n_tokens < 1:
        raise ValueError(f"description must count at least one text and token, got {n_texts} "
                         f"texts and {n_tokens} tokens.")
    params = {}
    if description["pretokenized"]:
        params.update(tokenizer="word", min_frequency=2, max_vocab_size=30_000)
    else:
        params.update(tokenizer="bpe", min_frequency=2,
                      max_vocab_size=int(min(16_000, max(2_000, round(n_tokens / 25, -2)))))
    if n_texts < SMALL_POOL:
        params.update(embed_dim=64, hidden_dim=128)
    elif n_texts < MEDIUM_POOL:
        params.update(embed_dim=128, hidden_dim=256)
    else:   # the reference sizes, BNVAE's defaults
        reference = BNVAE().get_params()
        params.update(embed_dim=reference["embed_dim"], hidden_dim=reference["hidden_dim"])
    params["max_epochs"] = int(min(20, max(3, math.ceil(TARGET_TOKENS / n_tokens))))
    if description["p95_tokens"] > LONG_TEXT_TOKENS:
        params["max_length"] = LONG_TEXT_TOKENS
    return params


def auto_vae(texts, **params):
    """An unfitted :class:`~ssl_textvae.BNVAE` with settings picked from ``texts``.

    Parameters
    ----------
    texts : list of str or re-iterable of str
        The texts it will be pretrained on (read once here to measure them).
    **params
        Any ``BNVAE`` parameter; these win over the picked ones.

    Returns
    -------
    BNVAE
        Unfitted; ``get_params()`` shows every value, picked or given.

    Examples
    --------
    >>> from ssl_textvae.presets import auto_vae
    >>> vae = auto_vae(["the food was good .", "the staff was rude ."] * 50, random_state=0)
    >>> vae.get_params()["tokenizer"], vae.get_params()["hidden_dim"]
    ('word', 128)
    """
    unknown = set(params) - set(BNVAE().get_params())
    if unknown:
        raise ValueError(f"Unknown BNVAE parameters {sorted(unknown)}.")
    return BNVAE(**{**data_dependent_params(describe_texts(texts)), **params})


def texts_for_minutes(vae, texts, minutes, probe_size=2000):
    """How many of ``texts``, from the first, ``vae`` pretrains on in about ``minutes``.

    Measured here, not assumed: a one-epoch fit of a clone of ``vae`` on the first
    ``probe_size`` texts gives the training seconds per text on this machine (its
    threads, precision and matrix-multiply path, as a real fit's); the count is what
    ``vae.max_epochs`` epochs at that rate fill, 10% left for validation passes. An
    estimate, not a promise: early stopping can end a fit sooner, and other jobs on
    the machine slow it.

    Parameters
    ----------
    vae : BNVAE
        The unfitted model to size for (its ``max_epochs`` counts).
    texts : list of str or re-iterable of str
    minutes : float
        Pretraining minutes, > 0.
    probe_size : int, default=2000
        Texts of the probe fit (at least 20).

    Returns
    -------
    n_texts : int
        Between ``probe_size`` and ``len(texts)``.
    tokens_per_second : float
        The probe's training throughput.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}.")
    if not isinstance(probe_size, int) or isinstance(probe_size, bool) or probe_size < 20:
        raise ValueError(f"probe_size must be an int >= 20, got {probe_size!r}.")
    epochs, held_out = max(vae.max_epochs, 1), vae.validation_fraction
    texts = iterate_texts(texts)
    probe_texts = list(itertools.islice(texts, probe_size))
    probe = clone(vae).set_params(max_epochs=1, verbose=0, checkpoint_dir=None).fit(probe_texts)
    record = probe.history_[-1]
    seconds_per_text = record["seconds"] / (len(probe_texts) * (1 - held_out))
    n_total = len(texts) if isinstance(texts, list) else sum(1 for _ in texts)
    budget = minutes * 60 / (1.1 * epochs * (1 - held_out) * seconds_per_text)
    return int(min(n_total, max(len(probe_texts), budget))), float(record["tokens_per_second"])


def small_pool_search_space(head=True, words=True):
    """A search space for :func:`ssl_textvae.tuning.tune` on pools of a few thousand
    texts: ``vae__gamma`` (0.3-1.2), ``vae__latent_dim`` (16, 32, 64),
    ``vae__hidden_dim`` (64, 128, 256), ``vae__dropout_in`` (0.3, 0.5, 0.7); with
    ``head``, the head's ``estimator__C`` (log-uniform on [1e-2, 1e3]: TF-IDF
    features of many classes want weak regularization); with ``words`` (beyond the
    paper), ``word_weight`` in (0, 0.5, 1, 2, 4), the TF-IDF features beside the
    means (0: means alone; on banking77 the words are what the means lack). Pass the
    other settings (e.g. :func:`data_dependent_params`) as ``fixed_params``."""
    from .tuning._optuna import import_optuna

    distributions = import_optuna().distributions
    space = {"vae__gamma": distributions.FloatDistribution(0.3, 1.2, step=0.1),
             "vae__latent_dim": distributions.CategoricalDistribution([16, 32, 64]),
             "vae__hidden_dim": distributions.CategoricalDistribution([64, 128, 256]),
             "vae__dropout_in": distributions.CategoricalDistribution([0.3, 0.5, 0.7])}
    if head:
        space["estimator__C"] = distributions.FloatDistribution(1e-2, 1e3, log=True)
    if words:
        space["word_weight"] = distributions.CategoricalDistribution([0.0, 0.5, 1.0, 2.0, 4.0])
    return space


def native_precision(device="auto"):
    """What ``precision="auto"`` trains in on ``device`` here: "bf16" where the hardware runs
    it natively (an AVX-512-bf16 or AMX CPU with bf16 LSTM kernels, a bf16 GPU), else "fp32".

    For budgets that depend on the kind of machine, as the quick run's pretraining minutes
    (``recipes/yelp_table3.py``). On a CPU a fit's matrix-multiply probe may still train an
    fp32 path where that measures faster (``history_[i]["matmul_path"]`` says which ran).
    ``device`` as ``BNVAE(device=...)``; one this process cannot use is a ``ValueError``."""
    return resolve_precision(resolve_device(device), "auto")
