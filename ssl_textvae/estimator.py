"""scikit-learn estimators over the torch model: the one module that joins the two.

``BNVAE`` is a transformer: ``fit`` pretrains the VAE on (unlabeled) texts and
``transform`` returns the posterior means. ``BNVAEClassifier`` pretrains a ``BNVAE``
on every text it is given and fits a head (``estimator``) on the means of the
labeled ones; pass a fitted ``BNVAE`` as ``vae`` to fit many heads on one
pretrained model without pretraining again.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import data as data_lib
from ._validation import (Interval, Options, check_classes, check_labels, check_texts,
                          validate_params)
from .metrics import encode_means
from .model import SOFTMAXES, TextVAE
from .runtime import PRECISIONS, check_finite_means, resolve_device
from .tokenization import KINDS, UNK_ID, TextTokenizer
from .training import KL_SCHEDULES, OBJECTIVES, OPTIMIZERS, TrainingConfig, pretrain

_int = numbers.Integral
_real = numbers.Real

VAE_CONSTRAINTS = {
    "latent_dim": Interval(_int, 1, None),
    "gamma": Interval(_real, 0, None, allow_none=True),
    "embed_dim": Interval(_int, 1, None),
    "hidden_dim": Interval(_int, 1, None),
    "dropout_in": Interval(_real, 0, 1, closed="left"),
    "dropout_out": Interval(_real, 0, 1, closed="left"),
    "tokenizer": Options(*KINDS),
    "max_vocab_size": Interval(_int, 5, None, allow_none=True),
    "min_frequency": Interval(_int, 1, None),
    "max_length": Interval(_int, 1, None, allow_none=True),
    "optimizer": Options(*OPTIMIZERS),
    "lr": Interval(_real, 0, None, closed="neither"),
    "batch_size": Interval(_int, 2, None),
    "max_epochs": Interval(_int, 0, None),
    "clip_grad_norm": Interval(_real, 0, None, allow_none=True),
    "lr_patience": Interval(_int, 1, None),
    "max_lr_halvings": Interval(_int, 0, None),
    "validation_fraction": Interval(_real, 0, 1, closed="neither"),
    "precision": Options(*PRECISIONS),
    "bn_eps": Interval(_real, 0, None, closed="neither"),
    "objective": Options(*OBJECTIVES),
    "kl_schedule": Options(*KL_SCHEDULES),
    "kl_start": Interval(_real, 0, 1),
    "kl_warmup_steps": Interval(_int, 1, None),
    "kl_cycles": Interval(_int, 1, None),
    "kl_cycle_ratio": Interval(_real, 0, 1, closed="right"),
    "free_bits": Interval(_real, 0, None),
    "softmax": Options(*SOFTMAXES),
    "verbose": Interval(_int, 0, None, allow_bool=True),
}

_VAE_PARAMS_DOC = """
    latent_dim : int, default=32
        Size of the latent code z.
    gamma : float or None, default=0.7
        The fixed scale of the batch norm on the posterior means (BN-VAE). The
        expected KL is then at least ``latent_dim * gamma**2 / 2`` nats. 0 or None
        gives a plain VAE.
    embed_dim, hidden_dim : int, default=128, 512
        Word-embedding size and LSTM size of encoder and decoder.
    dropout_in, dropout_out : float, default=0.5
        Dropout on the decoder's input embeddings and on its LSTM outputs.
    tokenizer : {"word", "bpe"}, default="word"
        Whitespace words (pre-tokenized corpora) or byte-pair subwords (raw text).
    max_vocab_size : int or None, default=None
        Keep the most frequent tokens only; None keeps all.
    min_frequency : int, default=1
        Rarer tokens map to ``<unk>``.
    lowercase : bool, default=False
        Lowercase texts before tokenizing.
    max_length : int or None, default=None
        Texts are cut to their first ``max_length`` tokens.
    optimizer : {"sgd", "adam"}, default="sgd"
        The paper's SGD keeps BN-VAE's bound; Adam is offered for comparison (a
        ``KLCollapseWarning`` is raised if the pre-BN variance nears ``bn_eps``).
    lr : float, default=1.0
        Learning rate (1.0 for SGD as in the paper; use about 1e-3 for Adam).
    batch_size : int, default=32
    max_epochs : int, default=20
        0 keeps the initial weights (an untrained baseline).
    clip_grad_norm : float or None, default=5.0
    lr_patience : int, default=2
        Epochs without a better validation loss before the learning rate halves
        and training goes back to the best weights.
    max_lr_halvings : int, default=3
        Training stops at the plateau after this many halvings (early stopping).
    validation_fraction : float, default=0.1
        Share of the pretraining texts held out for validation.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        "auto" trains and encodes (``transform``) under bf16 autocast where the
        CPU or GPU supports bf16, in fp32 elsewhere; "fp32" forces full precision.
        bf16 encodes about twice as fast on a CPU; the means differ from fp32 by
        a few thousandths, and heads fitted on either agree on over 99.8% of
        test predictions (``benchmarks/README.md``).
    bn_eps : float, default=1e-12
        Epsilon of the batch norm on the means, far below BatchNorm's 1e-5.
    objective : {"vae", "autoencoder"}, default="vae"
        "autoencoder" trains a deterministic autoencoder: z = mu, no KL term (the
        AE baseline of Li et al., EMNLP 2019); it is selected on its validation
        reconstruction. The KL options below are then ignored.
    kl_schedule : {"constant", "linear", "cyclical"}, default="constant"
        Weight of the KL term per optimizer step. "constant" is 1 (the true ELBO).
        "linear" is KL annealing (Bowman et al., CoNLL 2016; as in He et al., ICLR
        2019): from ``kl_start`` to 1 over ``kl_warmup_steps`` steps. "cyclical"
        is Fu et al. (NAACL 2019): ``kl_cycles`` cycles over ``max_epochs``
        epochs, the weight rising from ``kl_start`` to 1 in the first
        ``kl_cycle_ratio`` of each cycle and staying at 1 for the rest.
        Combined with ``gamma`` this is BN-VAE with annealing, as in the example
        of the official BN-VAE code. Validation and early stopping always use the
        true negative ELBO (weight 1); ``history_`` records the mean weight of
        each epoch as ``kl_weight``.
    kl_start : float, default=0.0
        KL weight at the start of a ramp ("linear" and "cyclical").
    kl_warmup_steps : int, default=10000
        Optimizer steps of the "linear" ramp (an epoch is about
        ``n_texts / batch_size`` steps).
    kl_cycles : int, default=4
        Number of cycles M of the "cyclical" schedule.
    kl_cycle_ratio : float, default=0.5
        Share R of each cycle during which the weight increases, in (0, 1].
    free_bits : float, default=0.0
        Free bits per latent dimension, in nats (Li et al., EMNLP 2019): in the
        training loss each text's KL in each dimension counts as
        ``max(KL_d, free_bits)``, so a dimension below the target is not pushed
        toward the prior. 0 turns it off.
    softmax : {"full", "adaptive"}, default="full"
        The decoder's output distribution. "full" is the paper's softmax over the
        whole vocabulary. "adaptive" is an adaptive softmax (Grave et al., ICML
        2017): the 1,000 most frequent words in a head, the rest in two smaller
        clusters; pretraining is faster (``benchmarks/bench_softmax.py``), and it
        is another language model than the paper's (``recipes/README.md`` compares
        the classifiers).
    device : str, default="auto"
        "auto" uses CUDA when present, else the CPU.
    checkpoint_dir : str or None, default=None
        Write a checkpoint there after each epoch and resume from it.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, batch order, initialization and dropout; global RNGs are
        left untouched.
    verbose : int, default=1
        0 is silent; 1 shows a tqdm progress bar and one line per epoch.
"""


def clone_sharing_vae(estimator):
    """``clone`` for estimators holding a fitted BNVAE as ``vae``: every other parameter
    is cloned, the BNVAE (never modified by them) is shared rather than cloned unfitted,
    so a search or cross-validation reuses one pretraining."""
    params = {name: clone(value, safe=False)
              for name, value in estimator.get_params(deep=False).items() if name != "vae"}
    return type(estimator)(vae=estimator.vae, **params)


class BNVAE(TransformerMixin, BaseEstimator):
    __doc__ = ("""BN-VAE language model as a transformer: texts -> posterior means.

    Parameters
    ----------""" + _VAE_PARAMS_DOC + """
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
    """)

    def __init__(self, latent_dim=32, gamma=0.7, embed_dim=128, hidden_dim=512, dropout_in=0.5,
                 dropout_out=0.5, tokenizer="word", max_vocab_size=None, min_frequency=1,
                 lowercase=False, max_length=None, optimizer="sgd", lr=1.0, batch_size=32,
                 max_epochs=20, clip_grad_norm=5.0, lr_patience=2, max_lr_halvings=3,
                 validation_fraction=0.1, precision="auto", bn_eps=1e-12, objective="vae",
                 kl_schedule="constant", kl_start=0.0, kl_warmup_steps=10_000, kl_cycles=4,
                 kl_cycle_ratio=0.5, free_bits=0.0, softmax="full", device="auto",
                 checkpoint_dir=None, random_state=None, verbose=1):
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
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None, epoch_callback=None):
        """Pretrain on texts ``X``: a list of str, a :class:`~ssl_textvae.data.TextFile`,
        a ``datasets.Dataset`` (its first string column), or any re-iterable of str.
        ``y`` is ignored. Empty lines are skipped with a warning.

        ``epoch_callback``, optional, is called as ``epoch_callback(self, record)``
        after each epoch, ``record`` being that epoch's history entry; ``transform``
        works inside it (at the current weights) without changing the training run.
        An exception it raises stops ``fit`` and propagates: ``ssl_textvae.tuning``
        uses it to report a score per epoch to Optuna and to prune hopeless trials."""
        validate_params(self, VAE_CONSTRAINTS)
        texts = data_lib.iterate_texts(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.tokenizer_ = TextTokenizer(self.tokenizer, self.max_vocab_size, self.min_frequency,
                                        self.lowercase, self.max_length).fit(texts)
        corpus = data_lib.EncodedCorpus.from_texts(self.tokenizer_, texts, skip_empty=True)
        if corpus.n_skipped:
            warnings.warn(f"Skipped {corpus.n_skipped} empty or whitespace-only texts.", UserWarning)
        if len(corpus) < 4:
            raise ValueError(f"Found {len(corpus)} non-empty texts to pretrain on; expected at least 4 "
                             "(batch norm needs 2 per batch, plus a validation split).")
        _check_vocabulary_overlap(corpus)
        order = np.random.default_rng(seed).permutation(len(corpus))
        n_valid = min(max(1, round(self.validation_fraction * len(corpus))), len(corpus) - 2)
        with torch.random.fork_rng(devices=[]):  # seeded initialization, global RNG untouched
            torch.manual_seed(seed)
            self.module_ = TextVAE(self.tokenizer_.vocab_size, self.embed_dim, self.hidden_dim,
                                   self.latent_dim, self.gamma, self.dropout_in, self.dropout_out,
                                   self.bn_eps, self.softmax)
        config = TrainingConfig(self.optimizer, self.lr, self.batch_size, self.max_epochs,
                                self.clip_grad_norm, self.lr_patience, self.max_lr_halvings,
                                self.precision, seed, self.verbose, objective=self.objective,
                                kl_schedule=self.kl_schedule, kl_start=self.kl_start,
                                kl_warmup_steps=self.kl_warmup_steps, kl_cycles=self.kl_cycles,
                                kl_cycle_ratio=self.kl_cycle_ratio, free_bits=self.free_bits)
        train, valid = corpus.subset(order[n_valid:]), corpus.subset(order[:n_valid])
        del corpus  # only the split copies stay in memory while training
        self.history_ = pretrain(self.module_, train, valid, config,
                                 resolve_device(self.device), self.checkpoint_dir,
                                 None if epoch_callback is None
                                 else lambda record: epoch_callback(self, record))
        self.n_features_out_ = self.latent_dim
        return self

    def transform(self, X):
        """Posterior means (after the batch norm, in eval mode): array (n_texts, latent_dim)."""
        check_is_fitted(self, "module_")
        corpus = self.encode(X)
        device = resolve_device(self.device)
        means = encode_means(self.module_.to(device), corpus, device, precision=self.precision)
        return check_finite_means(means)

    def encode(self, X):
        """Token ids of texts ``X`` as an :class:`~ssl_textvae.data.EncodedCorpus`
        (every text must be non-empty, so rows line up with ``X``)."""
        check_is_fitted(self, "tokenizer_")
        corpus = data_lib.EncodedCorpus.from_texts(self.tokenizer_, check_texts(X))
        _check_vocabulary_overlap(corpus)
        return corpus

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "module_")
        return np.asarray([f"bnvae_mu{i}" for i in range(self.latent_dim)], dtype=object)

    def evaluate(self, X, n_importance_samples=500, random_state=0, verbose=1):
        """Language-model metrics on texts ``X`` (see :func:`ssl_textvae.metrics.evaluate`):
        negative ELBO, reconstruction, KL, importance-weighted NLL with
        ``n_importance_samples`` samples and its perplexity, mutual information,
        active units and KL per dimension. Prints a table when ``verbose``; returns a dict."""
        from .metrics import evaluate

        check_is_fitted(self, "module_")
        return evaluate(self, X, n_importance_samples, random_state=random_state, verbose=verbose)

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
        z = torch.randn(n_samples, self.latent_dim, generator=torch.Generator().manual_seed(seed))
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
        from .generation import interpolation_path

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
        from .generation import decode_latents

        generator = torch.Generator(device=device).manual_seed(seed)
        ids = decode_latents(self.module_.to(device), z, max_tokens, temperature, generator)
        return [self.tokenizer_.decode(row) for row in ids]

    def save(self, path):
        """Write weights (safetensors), configuration and vocabulary (JSON) to directory ``path``."""
        from .persistence import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path):
        """Load what :meth:`save` wrote; no code is executed from the directory."""
        from .persistence import load_model

        return load_model(path, expected=cls)

    def __getstate__(self):
        # Store a CPU state dict so a GPU-trained model unpickles on a CPU-only machine.
        state = dict(self.__dict__)
        if "module_" in state:
            module = state.pop("module_")
            state["_module_state"] = ({k: v.detach().cpu() for k, v in module.state_dict().items()},
                                      module_kwargs(self))
        return state

    def __setstate__(self, state):
        module_state = state.pop("_module_state", None)
        state.setdefault("softmax", "full")  # pickled before the option existed
        self.__dict__.update(state)
        if module_state is not None:
            weights, kwargs = module_state
            self.module_ = TextVAE(**kwargs)
            self.module_.load_state_dict(weights)
            self.module_.eval()


def module_kwargs(vae: BNVAE) -> dict:
    """The constructor arguments of ``vae.module_`` (for rebuilding it from weights)."""
    return {"vocab_size": vae.tokenizer_.vocab_size, "embed_dim": vae.embed_dim,
            "hidden_dim": vae.hidden_dim, "latent_dim": vae.latent_dim, "gamma": vae.gamma,
            "dropout_in": vae.dropout_in, "dropout_out": vae.dropout_out, "bn_eps": vae.bn_eps,
            "softmax": vae.softmax}


def _check_vocabulary_overlap(corpus):
    """Refuse input where every text is unknown words only; warn when some are."""
    unknown = np.add.reduceat(corpus.ids != UNK_ID, corpus.offsets[:-1]) == 0 if len(corpus) else []
    n_unknown = int(np.sum(unknown))
    if n_unknown and n_unknown == len(corpus):
        raise ValueError(f"All {n_unknown} texts consist of out-of-vocabulary tokens only; the "
                         "model cannot tell them apart. Check the language and tokenization of "
                         "the input against the pretraining texts.")
    if n_unknown:
        warnings.warn(f"{n_unknown} of {len(corpus)} texts consist of out-of-vocabulary tokens "
                      "only; they all get the same representation.", UserWarning)


class BNVAEClassifier(ClassifierMixin, BaseEstimator):
    __doc__ = ("""Semi-supervised text classifier: a BN-VAE pretrained on all texts, a head on
    the posterior means of the labeled ones.

    ``y == -1`` (or ``"-1"`` for string labels) marks unlabeled texts, as in
    scikit-learn's ``SelfTrainingClassifier``.

    Parameters
    ----------
    estimator : classifier or None, default=None
        The head, cloned into ``estimator_``; None means
        ``LogisticRegression(max_iter=1000)``. Pass one explicitly to tune it in a
        search, as ``estimator__C``.
    vae : BNVAE or None, default=None
        A fitted :class:`BNVAE` to use as-is: ``fit`` then skips pretraining and
        the VAE parameters below are ignored. ``clone`` shares it rather than
        copying it (the classifier never modifies it), so ``GridSearchCV`` over
        the head reuses one pretrained model. None pretrains a new one.
    """ + _VAE_PARAMS_DOC + """
    Attributes
    ----------
    vae_ : BNVAE
        The pretrained VAE (``vae`` itself when given).
    estimator_ : classifier
        The fitted head.
    classes_ : ndarray
        Class labels, without the unlabeled marker.
    history_ : list of dict
        ``vae_.history_``.
    """)

    def __init__(self, estimator=None, vae=None, latent_dim=32, gamma=0.7, embed_dim=128,
                 hidden_dim=512, dropout_in=0.5, dropout_out=0.5, tokenizer="word",
                 max_vocab_size=None, min_frequency=1, lowercase=False, max_length=None,
                 optimizer="sgd", lr=1.0, batch_size=32, max_epochs=20, clip_grad_norm=5.0,
                 lr_patience=2, max_lr_halvings=3, validation_fraction=0.1, precision="auto",
                 bn_eps=1e-12, objective="vae", kl_schedule="constant", kl_start=0.0,
                 kl_warmup_steps=10_000, kl_cycles=4, kl_cycle_ratio=0.5, free_bits=0.0,
                 softmax="full", device="auto", checkpoint_dir=None, random_state=None, verbose=1):
        self.estimator = estimator
        self.vae = vae
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
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_clone__(self):
        return clone_sharing_vae(self)

    def fit(self, X, y, unlabeled=None):
        """Pretrain the VAE on ``X`` (and ``unlabeled``), then fit the head on the
        labeled rows of ``X``.

        Parameters
        ----------
        X : list of str
        y : array-like of int or str, shape (n_texts,)
            -1 (or "-1") marks unlabeled texts.
        unlabeled : re-iterable of str, optional
            More texts for pretraining only: a list, ``TextFile`` or ``datasets.Dataset``,
            which may be too large for memory.
        """
        validate_params(self, VAE_CONSTRAINTS)
        texts = check_texts(X)
        y, unlabeled_rows = check_labels(y, len(texts))
        check_classes(y[~unlabeled_rows])
        if self.vae is not None and not isinstance(self.vae, BNVAE):
            raise TypeError(f"vae must be a fitted BNVAE or None, got {type(self.vae).__name__}.")
        if self.vae is not None:
            check_is_fitted(self.vae, "module_", msg="The BNVAE passed as vae is not fitted yet; "
                            "fit it first, or pass vae=None to pretrain here.")
            self.vae_ = self.vae
            if unlabeled is not None:
                warnings.warn("unlabeled texts are ignored: vae is already pretrained.", UserWarning)
        else:
            source = texts if unlabeled is None else data_lib.ConcatTexts(texts, data_lib.iterate_texts(unlabeled))
            params = {name: getattr(self, name) for name in BNVAE().get_params()}
            self.vae_ = BNVAE(**params).fit(source)
        labeled = [text for text, skip in zip(texts, unlabeled_rows) if not skip]
        self.estimator_ = clone(self.estimator if self.estimator is not None
                                else LogisticRegression(max_iter=1000))
        self.estimator_.fit(self.vae_.transform(labeled), y[~unlabeled_rows])
        self.classes_ = self.estimator_.classes_
        self.history_ = self.vae_.history_
        return self

    def transform(self, X):
        """Posterior means of the pretrained VAE: array (n_texts, latent_dim)."""
        check_is_fitted(self, "vae_")
        return self.vae_.transform(X)

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self.transform(X))

    def predict_proba(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self.transform(X))

    def decision_function(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self.transform(X))

    def score(self, X, y, sample_weight=None):
        """Accuracy on labeled texts; ``y`` may not contain the unlabeled marker."""
        texts = check_texts(X)
        y, unlabeled_rows = check_labels(y, len(texts))
        if unlabeled_rows.any():
            raise ValueError("y contains -1 (unlabeled) entries; score needs a label for every text.")
        return super().score(texts, y, sample_weight)

    def save(self, path):
        """Write the VAE (safetensors + JSON) and the head (skops) to directory ``path``."""
        from .persistence import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path, trusted=None):
        """Load what :meth:`save` wrote. The head loads through ``skops.io`` with its
        default trusted types plus ``trusted`` (a list of type names) and nothing else."""
        from .persistence import load_model

        return load_model(path, expected=cls, trusted=trusted)

