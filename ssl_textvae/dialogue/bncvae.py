"""``BNCVAE``: the conditional VAE for dialogue responses as a scikit-learn style
estimator; ``gamma=0`` is the plain CVAE (Zhao et al., 2017), ``bow=True`` adds
their bag-of-words loss, ``gamma > 0`` is BN-CVAE (Zhu et al., 2020, section 4).

Contexts are lists of utterance strings (oldest first), responses strings.
:func:`dialogue_pairs` turns whole dialogues into such pairs.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import fields

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..estimators._docs import document_defaults
from ..estimators._validation import Interval, Options, python_scalar, validate_params
from .cvae import ConditionalVAE, generate_ids
from .metrics import fit_word_vectors
from .training import DialogueCorpus, DialogueTrainingConfig, evaluate_terms, train
from ..runtime.devices import PRECISIONS, resolve_device
from ..text.tokenization import TextTokenizer

__all__ = ["BNCVAE", "dialogue_pairs", "fit_word_vectors"]   # fit_word_vectors: evaluate's word_vectors

_int, _real = numbers.Integral, numbers.Real


class _Flag:
    def __contains__(self, value):
        return isinstance(value, (bool, np.bool_))

    def __str__(self):
        return "a bool"


CONSTRAINTS = {
    "latent_dim": Interval(_int, 1, None),
    "gamma": Interval(_real, 0, None, allow_none=True),
    "bow": _Flag(),
    "embed_dim": Interval(_int, 1, None),
    "utterance_dim": Interval(_int, 1, None),
    "context_dim": Interval(_int, 1, None),
    "decoder_dim": Interval(_int, 1, None),
    "dropout": Interval(_real, 0, 1, closed="left"),
    "max_context": Interval(_int, 1, None),
    "max_length": Interval(_int, 1, None, allow_none=True),
    "max_vocab_size": Interval(_int, 5, None, allow_none=True),
    "min_frequency": Interval(_int, 1, None),
    "lowercase": _Flag(),
    "lr": Interval(_real, 0, None, closed="neither"),
    "batch_size": Interval(_int, 2, None),
    "max_epochs": Interval(_int, 0, None),
    "clip_grad_norm": Interval(_real, 0, None, closed="neither", allow_none=True),
    "n_iter_no_change": Interval(_int, 1, None),
    "kl_warmup_steps": Interval(_int, 0, None),
    "validation_fraction": Interval(_real, 0, 1, closed="neither"),
    "precision": Options(*PRECISIONS),
    "bn_eps": Interval(_real, 0, None, closed="neither"),
    "verbose": Interval(_int, 0, None, allow_bool=True),
}


class BNCVAE(BaseEstimator):
    """Conditional VAE for responses given a dialogue context, with batch norm on the
    posterior means (BN-CVAE, Zhu et al., ACL 2020).

    Parameters
    ----------
    latent_dim : int
        Size of z (the paper: 200; smaller here so it trains on a CPU).
    gamma : float or None
        The fixed scale of the batch norm on the posterior means mu_q. The expected
        KL(q(z|c, y) || N(0, I)) is then at least ``latent_dim * gamma**2 / 2``, and the
        loss adds KL(p(z|c) || N(0, I)) as the paper does. 0 or None: plain CVAE.
    bow : bool
        Add the bag-of-words loss of Zhao et al. (predict the response's words from
        [c, z]): CVAE (BOW).
    embed_dim, utterance_dim, context_dim, decoder_dim : int
        Word embeddings; hidden sizes of the utterance bi-GRU (per direction), the
        context GRU and the decoder GRU (the paper: 300, 600, 400; smaller for CPUs).
    dropout : float
        Dropout on the decoder's input embeddings.
    max_context : int
        Only the last ``max_context`` utterances of a context are read.
    max_length : int or None
        Utterances are cut to their first ``max_length`` words.
    max_vocab_size : int or None
    min_frequency : int
    lowercase : bool
    lr : float
        Adam's learning rate (Zhao et al.'s optimizer).
    batch_size : int
    max_epochs : int
    clip_grad_norm : float or None
    n_iter_no_change : int
        Stop after this many epochs without a better validation negative ELBO; the
        best epoch's weights are kept.
    kl_warmup_steps : int
        Linear KL annealing from 0 to 1 over this many steps (Zhao et al. used
        10,000); 0 trains the true ELBO from the start.
    validation_fraction : float
        Share of the pairs held out when ``fit`` gets no ``validation_data``. Pairs
        are drawn at random, so turns of one dialogue can fall on both sides; pass
        ``validation_data`` from other dialogues (the recipe does) for a clean choice.
    precision : {"auto", "fp32", "bf16"}
        bf16 autocast where the hardware supports it.
    bn_eps : float
    device : str
        "auto" is CUDA when available, else the CPU.
    checkpoint_dir : str or None
        Write a checkpoint there after each epoch; ``fit`` resumes from it.
    random_state : int, RandomState instance or None
        Seeds the split, initialization, batch order and sampling of z.
    verbose : int

    Attributes
    ----------
    tokenizer_ : TextTokenizer
    module_ : ConditionalVAE
    history_ : list of dict
        Per epoch: training averages of the loss and each term, validation
        ``valid_loss`` (negative ELBO), ``valid_kl`` (KL(q || p)), ``valid_prior_kl``,
        ``valid_posterior_kl``, ``valid_perplexity``, seconds.

    See Also
    --------
    BNVAE : the unconditional BN-VAE language model the batch norm comes from.
    dialogue_pairs : (context, response) pairs from dialogues.

    Examples
    --------
    >>> from ssl_textvae import BNCVAE
    >>> from ssl_textvae.dialogue import dialogue_pairs
    >>> dialogues = [["hi there", "hello , how are you ?", "fine , thanks"]] * 12
    >>> contexts, responses = dialogue_pairs(dialogues)
    >>> model = BNCVAE(gamma=0.7, max_epochs=1, random_state=0, verbose=0)   # doctest: +SKIP
    >>> model.fit(contexts, responses).generate(contexts[:1], n_samples=2)  # doctest: +SKIP
    """

    def __init__(self, latent_dim=32, gamma=0.5, bow=False, embed_dim=128, utterance_dim=128,
                 context_dim=256, decoder_dim=256, dropout=0.0, max_context=5, max_length=40,
                 max_vocab_size=10_000, min_frequency=1, lowercase=True, lr=1e-3, batch_size=64,
                 max_epochs=10, clip_grad_norm=5.0, n_iter_no_change=3, kl_warmup_steps=0,
                 validation_fraction=0.1, precision="auto", bn_eps=1e-12, device="auto",
                 checkpoint_dir=None, random_state=None, verbose=1):
        self.latent_dim = latent_dim
        self.gamma = gamma
        self.bow = bow
        self.embed_dim = embed_dim
        self.utterance_dim = utterance_dim
        self.context_dim = context_dim
        self.decoder_dim = decoder_dim
        self.dropout = dropout
        self.max_context = max_context
        self.max_length = max_length
        self.max_vocab_size = max_vocab_size
        self.min_frequency = min_frequency
        self.lowercase = lowercase
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.clip_grad_norm = clip_grad_norm
        self.n_iter_no_change = n_iter_no_change
        self.kl_warmup_steps = kl_warmup_steps
        self.validation_fraction = validation_fraction
        self.precision = precision
        self.bn_eps = bn_eps
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, contexts, responses, validation_data=None):
        """Train on pairs: ``contexts`` a list of lists of utterance strings, ``responses``
        a list of strings. ``validation_data`` = (contexts, responses) for selecting the
        epoch; without it a random ``validation_fraction`` of the pairs is held out."""
        params = validate_params(self, CONSTRAINTS)   # numpy scalars as Python numbers
        contexts, responses = check_dialogues(contexts, responses, params.max_context)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("Expected validation_data to be a (contexts, responses) pair, got "
                                f"{type(validation_data).__name__}.")
            valid_pairs = check_dialogues(*validation_data, params.max_context, name="validation_data")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if validation_data is None:
            if len(responses) < 6:
                raise ValueError(f"Found {len(responses)} pairs; expected at least 6 (batch norm needs "
                                 "2 per batch, plus a validation split).")
            order = np.random.default_rng(seed).permutation(len(responses))
            n_valid = max(2, round(params.validation_fraction * len(responses)))
            valid_pairs = ([contexts[i] for i in order[:n_valid]], [responses[i] for i in order[:n_valid]])
            contexts, responses = [contexts[i] for i in order[n_valid:]], [responses[i] for i in order[n_valid:]]
        elif len(responses) < 2:
            raise ValueError(f"Found {len(responses)} training pairs; expected at least 2.")
        self.tokenizer_ = TextTokenizer("word", max_vocab_size=params.max_vocab_size,
                                        min_frequency=params.min_frequency, lowercase=params.lowercase,
                                        max_length=params.max_length).fit(
            [u for context in contexts for u in context] + list(responses))
        train_corpus = DialogueCorpus.from_texts(self.tokenizer_, contexts, responses)
        valid_corpus = DialogueCorpus.from_texts(self.tokenizer_, *valid_pairs)
        with torch.random.fork_rng(devices=[]):  # seeded initialization, global RNG untouched
            torch.manual_seed(seed)
            self.module_ = ConditionalVAE(**module_kwargs(self, self.tokenizer_.vocab_size))
        given = {"prior_penalty": bool(params.gamma), "seed": seed, "verbose": int(params.verbose)}
        named = {field.name: getattr(params, field.name) for field in fields(DialogueTrainingConfig)
                 if field.name not in given}   # the rest are parameters of the same name
        config = DialogueTrainingConfig(**given, **named)
        self.history_ = train(self.module_, train_corpus, valid_corpus, config,
                              resolve_device(self.device), self.checkpoint_dir)
        return self

    def generate(self, contexts, n_samples=5, temperature=0.0, max_tokens=40, random_state=None):
        """``n_samples`` responses per context, each decoded from its own z ~ p(z|c)
        (greedily when ``temperature`` is 0, by sampling words above 0): a list with one
        list of ``n_samples`` strings per context."""
        check_is_fitted(self, "module_")
        contexts = check_contexts(contexts, self.max_context)
        if not isinstance(n_samples, _int) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
        if not isinstance(temperature, _real) or temperature < 0:
            raise ValueError(f"temperature must be a float >= 0 (0 is greedy), got {temperature!r}.")
        if not isinstance(max_tokens, _int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}.")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(seed)
        device = resolve_device(self.device)
        # generation reads the contexts only; the responses are placeholders the batches need
        corpus = DialogueCorpus.from_texts(self.tokenizer_, contexts, ["."] * len(contexts))
        module = self.module_.to(device)
        out = []
        for start in range(0, len(contexts), 256):
            batch = corpus.batch(np.arange(start, min(start + 256, len(contexts))), device)
            rows = generate_ids(module, *batch[:4], n_samples=n_samples, max_tokens=max_tokens,
                                temperature=float(temperature), generator=generator)
            out.extend([self.tokenizer_.decode(ids) for ids in samples] for samples in rows)
        return out

    def evaluate(self, contexts, responses, n_samples=5, temperature=0.0, word_vectors=None,
                 max_tokens=40, random_state=0):
        """Likelihood terms and multi-reference response metrics on held-out pairs.

        ``responses[i]`` is a reference string or a list of them (the first scores
        the likelihood). Returns a dict: ``loss`` (negative ELBO per pair), ``kl``
        (KL(q || p)), ``prior_kl``, ``posterior_kl``, ``perplexity`` (of the
        reconstruction, as Zhao et al. report it), ``elbo_perplexity``; for BN-CVAE
        ``kl_bound`` = latent_dim * gamma^2 / 2 and ``bound_holds`` (posterior_kl >=
        kl_bound); and, from ``n_samples`` responses per context,
        :func:`~ssl_textvae.dialogue.metrics.response_metrics` (``word_vectors`` for
        the embedding scores). ``n_samples=0`` skips generation.
        """
        from .metrics import response_metrics

        check_is_fitted(self, "module_")
        references = _check_references(responses)
        contexts, first = check_dialogues(contexts, [r[0] for r in references], self.max_context,
                                          name="evaluation data")
        device = resolve_device(self.device)
        corpus = DialogueCorpus.from_texts(self.tokenizer_, contexts, first)
        result = evaluate_terms(self.module_.to(device), corpus, device, self.batch_size * 2,
                                self.precision, seed=int(check_random_state(random_state).randint(2**31 - 1)))
        if self.gamma:
            result["kl_bound"] = self.latent_dim * self.gamma ** 2 / 2
            result["bound_holds"] = bool(result["posterior_kl"] >= result["kl_bound"])
        if n_samples:
            hypotheses = self.generate(contexts, n_samples, temperature, max_tokens, random_state)
            result.update(response_metrics(hypotheses, references, word_vectors, lowercase=self.lowercase))
        return result

    def save(self, path):
        """Weights (safetensors), parameters and history (config.json) and vocabulary
        (tokenizer.json) into directory ``path``, written beside it and swapped in (a
        failed save leaves what was there intact); ``ssl_textvae.load`` reads it too."""
        from ..estimators import persistence

        check_is_fitted(self, "module_")

        def write(directory, stamp):
            persistence.save_tokenizer(self.tokenizer_, directory)
            persistence.save_weights(self.module_, os.path.join(directory, persistence.WEIGHTS), stamp)

        persistence.save_directory(path, type(self).__name__, write,
                                   params=persistence.jsonable(self.get_params()), history=self.history_)

    @classmethod
    def load(cls, path):
        """Read what :meth:`save` wrote; no code is executed from the directory, and a
        file swapped or edited after saving is refused with a ``ValueError``."""
        from ..estimators import persistence

        config = persistence.read_config(path, cls.__name__, ("params", "history"))
        model = cls(**persistence.check_params(path, config["params"], cls, CONSTRAINTS))
        model.tokenizer_ = persistence.load_tokenizer(path)
        weights = os.path.join(path, persistence.WEIGHTS)
        model.module_ = persistence.load_weights(
            ConditionalVAE(**module_kwargs(model, model.tokenizer_.vocab_size)), weights)
        persistence.check_saved_files(path, config, persistence.weights_stamp(weights), persistence.WEIGHTS)
        model.history_ = config["history"]
        return model

    def __getstate__(self):
        # a CPU state dict, so a GPU-trained model unpickles on a CPU-only machine
        state = dict(self.__dict__)
        if "module_" in state:
            module = state.pop("module_")
            state["_module_state"] = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        return state

    def __setstate__(self, state):
        weights = state.pop("_module_state", None)
        self.__dict__.update(state)
        if weights is not None:
            self.module_ = ConditionalVAE(**module_kwargs(self, self.tokenizer_.vocab_size))
            self.module_.load_state_dict(weights)
            self.module_.eval()


BNCVAE.__doc__ = document_defaults(BNCVAE.__doc__, BNCVAE.__init__)


def module_kwargs(model: BNCVAE, vocab_size) -> dict:
    """The ``ConditionalVAE`` arguments of a BNCVAE's parameters, by name (numpy scalars
    as Python numbers)."""
    names = ("embed_dim", "utterance_dim", "context_dim", "decoder_dim", "latent_dim", "gamma",
             "bn_eps", "dropout")
    return {"vocab_size": vocab_size, "bow": bool(model.bow),
            **{name: python_scalar(getattr(model, name)) for name in names}}


def dialogue_pairs(dialogues, max_context=None):
    """(contexts, responses) from dialogues (each a list of utterance strings): every
    turn after the first is a response to the (last ``max_context``) turns before it."""
    contexts, responses = [], []
    for dialogue in dialogues:
        for turn in range(1, len(dialogue)):
            contexts.append(list(dialogue[max(0, turn - max_context) if max_context else 0:turn]))
            responses.append(dialogue[turn])
    return contexts, responses


def check_contexts(contexts, max_context=None, name="contexts"):
    """A list of contexts, each a non-empty list of non-empty utterance strings; each cut
    to its last ``max_context`` utterances."""
    if isinstance(contexts, (str, bytes)) or not hasattr(contexts, "__len__"):
        raise TypeError(f"Expected {name} to be a list of contexts (each a list of utterance strings), "
                        f"got {type(contexts).__name__}.")
    contexts = list(contexts)
    if not contexts:
        raise ValueError(f"Found 0 contexts in {name}; expected at least 1.")
    checked = []
    for index, context in enumerate(contexts):
        if isinstance(context, str):
            raise TypeError(f"Expected context {index} of {name} to be a list of utterance strings, got "
                            "a single str; wrap it in a list: [utterance].")
        if not isinstance(context, (list, tuple)) or not context:
            raise ValueError(f"Expected context {index} of {name} to be a non-empty list of utterance "
                             f"strings, got {context!r:.60}.")
        for utterance in context:
            if not isinstance(utterance, str):
                raise TypeError(f"Expected every utterance of context {index} of {name} to be a str, got "
                                f"{type(utterance).__name__}.")
            if not utterance.strip():
                raise ValueError(f"Context {index} of {name} holds an empty or whitespace-only utterance.")
        checked.append(list(context[-max_context:] if max_context else context))
    return checked


def check_dialogues(contexts, responses, max_context=None, name="the training data"):
    contexts = check_contexts(contexts, max_context, name=f"the contexts of {name}")
    if isinstance(responses, (str, bytes)) or not hasattr(responses, "__len__"):
        raise TypeError(f"Expected the responses of {name} to be a list of strings, got "
                        f"{type(responses).__name__}.")
    responses = list(responses)
    if len(responses) != len(contexts):
        raise ValueError(f"contexts and responses have inconsistent numbers of samples: {len(contexts)} "
                         f"contexts, {len(responses)} responses.")
    for index, response in enumerate(responses):
        if not isinstance(response, str):
            raise TypeError(f"Expected response {index} of {name} to be a str, got {type(response).__name__}.")
        if not response.strip():
            raise ValueError(f"Response {index} of {name} is empty or whitespace only.")
    return contexts, responses


def _check_references(responses):
    if isinstance(responses, (str, bytes)) or not hasattr(responses, "__len__"):
        raise TypeError(f"Expected responses to be a list (a str or a list of str per context), got "
                        f"{type(responses).__name__}.")
    references = [[r] if isinstance(r, str) else list(r) for r in responses]
    if any(not r or not all(isinstance(x, str) for x in r) for r in references):
        raise TypeError("Expected each item of responses to be a str or a non-empty list of str.")
    return references
