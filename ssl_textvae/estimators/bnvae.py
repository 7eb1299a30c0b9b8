"""``BNVAE``, the pretrained language model as a scikit-learn transformer.

``fit`` pretrains the VAE on (unlabeled) texts and ``transform`` returns the
posterior means. The classifiers take a ``BNVAE`` as their ``vae`` parameter
(:mod:`ssl_textvae.estimators._classifier_base`).
"""

from __future__ import annotations

import inspect
import numbers
import os
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._docs import document_defaults
from ._validation import string_input_tags, validate_params
from ._vae_params import (VAE_CONSTRAINTS, VAE_PARAMS_DOC, check_model_memory, module_kwargs,
                          training_config)
from ..text.data import EncodedCorpus, check_distinct, check_vocabulary_overlap, warn_unknown_rows
from ..nn.generation import decode_latents, interpolation_path
from ..nn.inference import encode_means
from ..text.inputs import TextList, check_texts, iterate_texts
from ..nn.model import TextVAE
from ..nn.pretrained import (ENCODER_LR, EmbeddingCache, PretrainedEncoder, backbone_from_config,
                             embed_texts, load_backbone, load_encoder_files, save_encoder_files)
from ..runtime.devices import check_finite_means, resolve_device
from ..text.tokenization import TextTokenizer
from ..engine.training import pretrain

__all__ = ["BNVAE", "module_kwargs", "training_config"]   # the builders: for scripts on the torch parts


class BNVAE(TransformerMixin, BaseEstimator):
    __doc__ = ("""BN-VAE language model as a transformer: texts -> posterior means.

    Parameters
    ----------""" + VAE_PARAMS_DOC + """
    Attributes
    ----------
    tokenizer_ : TextTokenizer
    module_ : TextVAE
        The trained torch module (on the CPU after unpickling).
    history_ : list of dict
        Per epoch: train/valid loss, reconstruction, KL, valid active units, lr,
        seconds, tokens per second, smallest pre-BN variance.
    n_features_out_ : int
        ``latent_dim``.

    See Also
    --------
    BNVAEClassifier : a head on the means of a BNVAE (``vae=BNVAE(...)``).
    FineTunedBNVAEClassifier : a BNVAE's encoder fine-tuned with the labels.
    sklearn.frozen.FrozenEstimator : wrap a fitted BNVAE to reuse it as it is.

    Examples
    --------
    >>> from ssl_textvae import BNVAE
    >>> texts = ["the food was good", "the staff was rude", "great place", "cold food"] * 4
    >>> vae = BNVAE(latent_dim=4, embed_dim=8, hidden_dim=8, max_epochs=1, verbose=0,
    ...             random_state=0).fit(texts)
    >>> vae.transform(["good food"]).shape
    (1, 4)
    """)

    def __init__(self, latent_dim=32, gamma=0.7, embed_dim=128, hidden_dim=512, dropout_in=0.5,
                 dropout_out=0.5, tokenizer="word", max_vocab_size=None, min_frequency=1,
                 lowercase=False, max_length=None, optimizer="sgd", lr=1.0, batch_size=32,
                 max_epochs=20, clip_grad_norm=5.0, lr_patience=2, max_lr_halvings=3,
                 validation_fraction=0.1, precision="auto", bn_eps=1e-12, objective="vae",
                 kl_schedule="constant", kl_start=0.0, kl_warmup_steps=10_000, kl_cycles=4,
                 kl_cycle_ratio=0.5, free_bits=0.0, softmax="full", encoder=None,
                 freeze_encoder=True, encoder_lr=ENCODER_LR, device="auto", checkpoint_dir=None,
                 random_state=None, verbose=1):
        self.latent_dim = latent_dim
        self.gamma = gamma
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.dropout_in = dropout_in
        self.dropout_out = dropout_out
        self.tokenizer = tokenizer
        self.max_vocab_size = max_vocab_size
        self.min_frequency = min_frequency
        self.lowercase = lowercase
        self.max_length = max_length
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.clip_grad_norm = clip_grad_norm
        self.lr_patience = lr_patience
        self.max_lr_halvings = max_lr_halvings
        self.validation_fraction = validation_fraction
        self.precision = precision
        self.bn_eps = bn_eps
        self.objective = objective
        self.kl_schedule = kl_schedule
        self.kl_start = kl_start
        self.kl_warmup_steps = kl_warmup_steps
        self.kl_cycles = kl_cycles
        self.kl_cycle_ratio = kl_cycle_ratio
        self.free_bits = free_bits
        self.softmax = softmax
        self.encoder = encoder
        self.freeze_encoder = freeze_encoder
        self.encoder_lr = encoder_lr
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None, epoch_callback=None):
        """Pretrain on texts ``X``: a list of str, a :class:`~ssl_textvae.text.data.TextFile`,
        a ``datasets.Dataset`` (its first string column), or any re-iterable of str.
        ``y`` is ignored. Empty lines are skipped with a warning. Texts that are all the
        same after tokenization, and sizes whose fp32 parameters exceed this machine's
        memory, are a ``ValueError`` before training starts.

        ``epoch_callback``, optional, is called as ``epoch_callback(self, record)``
        after each epoch, ``record`` being that epoch's history entry; ``transform``
        works inside it (at the current weights) without changing the training run.
        An exception it raises stops ``fit`` and propagates: ``ssl_textvae.tuning``
        uses it to report a score per epoch to Optuna and to prune hopeless trials."""
        self._fit(X, epoch_callback)
        return self

    def _fit(self, X, epoch_callback=None, keep=None):
        """:meth:`fit`, returning the rows ``keep`` of the encoded pretraining corpus (its
        non-empty texts in order) before the split, or None: a classifier reads its labeled
        texts from them, so no text is checked or tokenized twice."""
        params = validate_params(self, VAE_CONSTRAINTS)   # numpy scalars as Python numbers
        texts = iterate_texts(X)   # as it is when checked already (a classifier's)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.tokenizer_ = TextTokenizer(kind=params.tokenizer, max_vocab_size=params.max_vocab_size,
                                        min_frequency=params.min_frequency, lowercase=params.lowercase,
                                        max_length=params.max_length).fit(texts)
        corpus = EncodedCorpus.from_texts(self.tokenizer_, texts, skip_empty=True)
        if corpus.n_skipped:
            warnings.warn(f"Skipped {corpus.n_skipped} empty or whitespace-only texts.", UserWarning)
        if len(corpus) < 4:
            raise ValueError(f"Found {len(corpus)} non-empty texts to pretrain on; expected at least 4 "
                             "(batch norm needs 2 per batch, plus a validation split).")
        check_vocabulary_overlap(corpus)
        check_distinct(corpus)
        sizes = module_kwargs(params, self.tokenizer_.vocab_size)
        check_model_memory(sizes)
        order = np.random.default_rng(seed).permutation(len(corpus))
        n_valid = min(max(1, round(params.validation_fraction * len(corpus))), len(corpus) - 2)
        encoder = None
        if params.encoder is not None:
            backbone, self.encoder_tokenizer_ = load_backbone(params.encoder)
            encoder = PretrainedEncoder(backbone, params.latent_dim, params.freeze_encoder)
        with torch.random.fork_rng(devices=[]):  # seeded initialization, global RNG untouched
            torch.manual_seed(seed)
            self.module_ = TextVAE(**sizes, encoder=encoder)
        if encoder is not None:
            corpus.encoder_inputs = self._encoder_inputs(TextList(t for t in texts if t.strip()),
                                                         len(corpus))
        config = training_config(params, seed, trains_encoder=encoder is not None and not encoder.frozen)
        kept = None if keep is None else corpus.subset(keep)
        train, valid = corpus.subset(order[n_valid:]), corpus.subset(order[:n_valid])
        del corpus  # only the split copies stay in memory while training
        self.history_ = pretrain(self.module_, train, valid, config,
                                 resolve_device(self.device), params.checkpoint_dir,
                                 None if epoch_callback is None
                                 else lambda record: epoch_callback(self, record))
        self.n_features_out_ = params.latent_dim
        return kept

    def transform(self, X):
        """Posterior means (after the batch norm, in eval mode): array (n_texts, latent_dim)."""
        check_is_fitted(self, "module_")
        return self._means(self.encode(X))

    def _means(self, corpus):
        """:meth:`transform` of texts already encoded (:meth:`encode`)."""
        device = resolve_device(self.device)
        return check_finite_means(encode_means(self.module_.to(device), corpus, device,
                                               precision=self.precision))

    def encode(self, X, encoder_ids=False):
        """Token ids of texts ``X`` as an :class:`~ssl_textvae.text.data.EncodedCorpus`,
        one row per text: an empty or whitespace-only text is one unknown token. A
        warning counts the empty texts and those of unknown words only (they all get
        the same representation). With a pretrained encoder the corpus also holds what
        it reads: its cached vectors when frozen, or its own token ids when it trains
        or ``encoder_ids`` is true (for fine-tuning it with labels)."""
        check_is_fitted(self, "tokenizer_")
        texts = check_texts(X, allow_empty=True)
        corpus = EncodedCorpus.from_texts(self.tokenizer_, texts, empty_as_unknown=True)
        warn_unknown_rows(corpus)
        if getattr(self.module_, "pretrained_encoder", False):
            corpus.encoder_inputs = self._encoder_inputs(texts, len(corpus), encoder_ids)
        return corpus

    def _hand_over(self, corpus, texts, encoder_ids=False):
        """What ``encode(texts, encoder_ids)`` returns, from ``corpus``, the rows of the
        non-empty ``texts`` that :meth:`_fit` kept (tokenized there)."""
        warn_unknown_rows(corpus)
        if encoder_ids and self.module_.pretrained_encoder and self.module_.encoder.frozen:
            corpus.encoder_inputs = self._encoder_inputs(texts, len(corpus), ids=True)
        return corpus

    def _encoder_inputs(self, texts, n_rows, ids=False):
        """What the pretrained encoder reads of ``texts`` (one per corpus row): its cached
        pooled vectors when frozen, its own token ids when it trains."""
        if len(texts) != n_rows:   # the word tokenizer and the texts must agree row for row
            raise RuntimeError(f"{len(texts)} texts for {n_rows} corpus rows.")
        encoder = self.module_.encoder
        if encoder.frozen and not ids:
            progress = tqdm(total=len(texts), desc="pretrained encoder", unit="text", leave=False,
                            disable=not self.verbose or len(texts) < 1000)
            with progress:
                return EmbeddingCache.vectors(encoder, self.encoder_tokenizer_, list(texts),
                                              resolve_device(self.device), progress, self.precision)
        return EncodedCorpus.from_texts(self.encoder_tokenizer_, texts, empty_as_unknown=True)

    def embed(self, X):
        """The pretrained encoder's pooled, L2-normalized vectors of texts ``X`` (what its
        posterior layer reads): array (n_texts, width). Only for ``encoder`` set."""
        check_is_fitted(self, "module_")
        if not self.module_.pretrained_encoder:
            raise ValueError("embed needs a BNVAE with a pretrained encoder (encoder=...); this "
                             "one has the paper's LSTM encoder, whose representation is transform(X).")
        texts = check_texts(X, allow_empty=True)
        encoder = self.module_.encoder
        if encoder.frozen:
            return self._encoder_inputs(texts, len(texts))
        return embed_texts(encoder, self.encoder_tokenizer_, texts, resolve_device(self.device),
                           precision=self.precision)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "module_")
        return np.asarray([f"bnvae_mu{i}" for i in range(self.latent_dim)], dtype=object)

    def evaluate(self, X, n_importance_samples=500, random_state=0, verbose=1):
        """Language-model metrics on texts ``X`` (see :func:`ssl_textvae.engine.metrics.evaluate`):
        negative ELBO, reconstruction, KL, importance-weighted NLL with
        ``n_importance_samples`` samples and its perplexity, mutual information,
        active units and KL per dimension. Prints a table when ``verbose``; returns a dict."""
        from ..engine.metrics import evaluate

        check_is_fitted(self, "module_")
        # A TextFile or Dataset is read into memory once: evaluation sets are small.
        corpus = self.encode(X if isinstance(X, list) else TextList(iterate_texts(X)))
        return evaluate(self.module_, corpus, n_importance_samples, random_state=random_state,
                        device=resolve_device(self.device), verbose=verbose)

    def sample(self, n_samples=1, temperature=0.0, max_tokens=40, random_state=None):
        """Generate ``n_samples`` texts from z ~ N(0, I), the prior.

        ``temperature`` 0 decodes greedily; above 0 each token is sampled from the
        decoder's softmax at that temperature. Texts stop at ``</s>`` or after
        ``max_tokens`` tokens. Returns a list of str.
        """
        check_is_fitted(self, "module_")
        if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
        device = resolve_device(self.device)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        z = torch.randn(n_samples, self.n_features_out_, generator=torch.Generator().manual_seed(seed))
        return self._decode(z, temperature, max_tokens, seed, device)

    def reconstruct(self, X, temperature=0.0, max_tokens=40, random_state=None):
        """Decode each text of ``X`` from its posterior mean (greedy by default):
        a list of str, one per text."""
        check_is_fitted(self, "module_")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        z = torch.from_numpy(self.transform(X))
        return self._decode(z, temperature, max_tokens, seed, resolve_device(self.device))

    def interpolate(self, start, end, steps=5, temperature=0.0, max_tokens=40, random_state=None):
        """Texts decoded at ``steps`` evenly spaced points between the posterior means of
        the texts ``start`` and ``end``, endpoints included (greedy by default, so the
        first and last equal ``reconstruct([start, end])``). Returns a list of str."""
        check_is_fitted(self, "module_")
        for name, text in (("start", start), ("end", end)):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, got {type(text).__name__}.")
        if not isinstance(steps, numbers.Integral) or isinstance(steps, bool):
            raise TypeError(f"steps must be an int, got {type(steps).__name__}.")
        means = torch.from_numpy(self.transform([start, end]))               # (2, latent)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        return self._decode(interpolation_path(means[0], means[1], int(steps)), temperature,
                            max_tokens, seed, resolve_device(self.device))

    def _decode(self, z, temperature, max_tokens, seed, device):
        generator = torch.Generator(device=device).manual_seed(seed)
        ids = decode_latents(self.module_.to(device), z, max_tokens, temperature, generator)
        return [self.tokenizer_.decode(row) for row in ids]

    def save(self, path):
        """Write weights (safetensors), configuration and vocabulary (JSON) to directory ``path``.

        The directory is written beside ``path`` and then replaces it, so a failed save
        (``ssl_textvae.estimators.persistence.SaveError``, an ``OSError``) leaves what was there
        intact; entries of ``path`` that no save writes (a ``checkpoints/`` folder) are
        kept. config.json records the SHA-256 of each file, and the weights that of
        config.json's settings.
        """
        check_is_fitted(self, "module_")

        def write(directory, stamp):
            persistence.save_tokenizer(self.tokenizer_, directory)
            if self.module_.pretrained_encoder:   # the architecture and tokenizer; weights below
                save_encoder_files(self.module_.encoder, self.encoder_tokenizer_, directory)
            persistence.save_weights(self.module_, os.path.join(directory, persistence.WEIGHTS), stamp)

        persistence.save_directory(path, "BNVAE", write, params=persistence.jsonable(self.get_params()),
                                   history=self.history_)

    @classmethod
    def load(cls, path):
        """Load what :meth:`save` wrote (format 1, 2 or 3); no code is executed from the
        directory. From format 3, a file swapped or edited after saving (config.json
        included) is refused with a ``ValueError`` naming it."""
        config = persistence.read_config(path, "BNVAE", ("params", "history"))
        return cls.from_directory(path, config["params"], config["history"], config)

    @classmethod
    def from_directory(cls, path, params, history, config=None):
        """The fitted BNVAE of parameters ``params`` and history ``history`` whose
        vocabulary (tokenizer.json) and weights (model.safetensors) are in ``path``;
        :meth:`load` reads ``params`` and ``history`` from its config.json, passed
        as ``config`` to check that the files are the ones saved with it."""
        vae = cls(**persistence.check_params(path, params, cls, VAE_CONSTRAINTS))
        vae.tokenizer_ = persistence.load_tokenizer(path)
        encoder = None
        if vae.encoder is not None:
            encoder, vae.encoder_tokenizer_ = load_encoder_files(path, vae.latent_dim, vae.freeze_encoder)
        weights = os.path.join(path, persistence.WEIGHTS)
        vae.module_ = persistence.load_weights(
            TextVAE(**module_kwargs(vae, vae.tokenizer_.vocab_size), encoder=encoder), weights)
        _check_saved_settings(path, vae, params)
        if config is not None:
            persistence.check_saved_files(path, config, persistence.weights_stamp(weights),
                                          persistence.WEIGHTS)
        vae.history_ = history
        vae.n_features_out_ = vae.latent_dim
        return vae

    def __sklearn_tags__(self):
        return string_input_tags(super().__sklearn_tags__())

    def __getstate__(self):
        # Store a CPU state dict so a GPU-trained model unpickles on a CPU-only machine.
        state = dict(self.__dict__)
        if "module_" in state:
            module = state.pop("module_")
            spec = None
            if module.pretrained_encoder:
                spec = (module.encoder.backbone.config.to_json_string(), module.encoder.frozen)
            state["_module_state"] = ({k: v.detach().cpu() for k, v in module.state_dict().items()},
                                      module_kwargs(self, self.tokenizer_.vocab_size), spec)
        return state

    def __setstate__(self, state):
        module_state = state.pop("_module_state", None)
        for name, parameter in inspect.signature(BNVAE.__init__).parameters.items():
            if name != "self":   # pickled before the parameter existed: its default
                state.setdefault(name, parameter.default)
        self.__dict__.update(state)
        if module_state is not None:
            weights, kwargs, spec = (*module_state, None)[:3]
            encoder = None if spec is None else PretrainedEncoder(backbone_from_config(spec[0]),
                                                                  kwargs["latent_dim"], spec[1])
            self.module_ = TextVAE(**kwargs, encoder=encoder)
            self.module_.load_state_dict(weights)
            self.module_.eval()


BNVAE.__doc__ = document_defaults(BNVAE.__doc__, BNVAE.__init__)


def _check_saved_settings(path, vae, params):
    """The settings in config.json (``params``) that tokenizer.json and the weights were
    written with: an edited one would load silently and ``get_params`` would lie."""
    tokenizer = vae.tokenizer_
    for name, saved in (("tokenizer", tokenizer.kind), ("max_vocab_size", tokenizer.max_vocab_size),
                        ("min_frequency", tokenizer.min_frequency), ("lowercase", tokenizer.lowercase),
                        ("max_length", tokenizer.max_length)):
        if name in params:
            persistence.check_saved_setting(path, name, params[name], persistence.TOKENIZER, saved)
    norm = getattr(vae.module_.mean_norm, "norm", None)
    if norm is not None:   # BN-VAE: the batch norm's fixed weight is gamma
        if not torch.equal(norm.weight, torch.full_like(norm.weight, vae.gamma)):
            persistence.check_saved_setting(path, "gamma", vae.gamma, persistence.WEIGHTS,
                                            float(f"{norm.weight[0].item():.7g}"))
