"""Each default of an estimator is written once, in the signature of its ``__init__``: the
docstring is generated from it, and the torch objects it builds take every setting by name."""

import inspect
import pickle
import re
from dataclasses import MISSING, fields

import pytest
import torch

from ssl_textvae import BNCVAE, BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier
from ssl_textvae.dialogue.cvae import ConditionalVAE
from ssl_textvae.dialogue.training import DialogueTrainingConfig
from ssl_textvae.engine.fine_tuning import FineTuningConfig
from ssl_textvae.engine.training import TrainingConfig
from ssl_textvae.estimators._docs import default_text, document_defaults
from ssl_textvae.estimators._vae_params import MODULE_PARAMS, VAE_PARAMS_DOC
from ssl_textvae.estimators.bnvae import module_kwargs, training_config
from ssl_textvae.nn.model import Decoder, MeanBatchNorm, TextVAE

from conftest import make_corpus



def defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self"}


DEFAULTS = defaults(BNVAE)
# Values unlike every default, so a setting read from the wrong parameter shows.
OTHERS = dict(latent_dim=3, gamma=0.4, embed_dim=6, hidden_dim=20, dropout_in=0.15, dropout_out=0.25,
              bn_eps=1e-7, softmax="adaptive", optimizer="adam", lr=0.003, batch_size=7, max_epochs=9,
              clip_grad_norm=2.5, lr_patience=4, max_lr_halvings=6, precision="fp32", verbose=0,
              objective="autoencoder", kl_schedule="cyclical", kl_start=0.2, kl_warmup_steps=77,
              kl_cycles=3, kl_cycle_ratio=0.3, free_bits=0.05, encoder_lr=1e-4)


def documented_defaults(doc):
    """``{name: default text}`` of each parameter line of a numpydoc Parameters section."""
    section = doc.split("    Parameters\n    ----------\n")[1].split("\n    Attributes\n")[0]
    found = {}
    for names, values in re.findall(r"^    (\w+(?:, \w+)*) : .*?, default=(.+)$", section, flags=re.M):
        names = names.split(", ")
        values = values.split(", ") if len(names) > 1 and ", " in values else [values] * len(names)
        found.update(zip(names, values))
    return found


@pytest.mark.parametrize("cls", [BNVAE, BNVAEClassifier, FineTunedBNVAEClassifier, BNCVAE],
                         ids=lambda cls: cls.__name__)
def test_the_docstring_shows_each_default_of_the_signature(cls):
    assert documented_defaults(cls.__doc__) == {name: default_text(value)
                                                for name, value in defaults(cls).items()}


def test_the_bnvae_docstring_reads_as_numpydoc():
    assert 'tokenizer : {"word", "bpe"}, default="word"' in BNVAE.__doc__
    assert "embed_dim, hidden_dim : int, default=128, 512" in BNVAE.__doc__
    assert "encoder_lr : float, default=2e-5" in BNVAE.__doc__


def test_the_written_documentation_holds_no_default():
    assert "default=" not in VAE_PARAMS_DOC
    with pytest.raises(ValueError, match="writes its default"):
        document_defaults("Doc.\n\n    Parameters\n    ----------\n    lr : float, default=1.0\n", BNVAE.__init__)


@pytest.mark.parametrize("value, text", [("word", '"word"'), (None, "None"), (True, "True"), (2e-5, "2e-5"),
                                         (1e-12, "1e-12"), (10_000, "10000"), (0.5, "0.5")])
def test_defaults_are_written_as_numpydoc_writes_them(value, text):
    assert default_text(value) == text


def test_the_torch_objects_hold_no_default_of_a_bnvae_setting():
    # TextVAE's ``encoder`` is a torch module (None: the LSTM), not the setting of that name
    named_like_a_setting = set(DEFAULTS) - {"encoder"} | {"eps"}
    for function in (TextVAE.__init__, Decoder.__init__, MeanBatchNorm.__init__):
        given = [name for name, p in inspect.signature(function).parameters.items()
                 if name in named_like_a_setting and p.default is not inspect.Parameter.empty]
        assert not given, f"{function.__qualname__} repeats the defaults of {given}"
    for config, owner, prefix in ((TrainingConfig, BNVAE, ""), (DialogueTrainingConfig, BNCVAE, ""),
                                  (FineTuningConfig, FineTunedBNVAEClassifier, "fine_tuning_")):
        names = {name[len(prefix):] if name.startswith(prefix) else name for name in defaults(owner)}
        given = [field.name for field in fields(config) if field.name in names and field.default is not MISSING]
        assert not given, f"{config.__name__} repeats the defaults of {given}"
    given = [name for name, p in inspect.signature(ConditionalVAE.__init__).parameters.items()
             if p.default is not inspect.Parameter.empty]
    assert not given, f"ConditionalVAE repeats the defaults of {given}"
    with pytest.raises(TypeError):   # by name only: no copying by position
        TextVAE(20, 8, 16, 4)


def test_training_config_takes_each_setting_by_name():
    config = training_config(BNVAE(**OTHERS), seed=5, trains_encoder=True)
    for field in fields(TrainingConfig):
        if field.name in OTHERS:
            assert getattr(config, field.name) == OTHERS[field.name], field.name
    assert (config.seed, config.n_threads) == (5, None)
    assert training_config(BNVAE(**OTHERS), seed=5).encoder_lr is None   # no encoder trains


def test_the_module_takes_each_setting_by_name():
    module = TextVAE(**module_kwargs(BNVAE(**OTHERS), 30))
    assert set(module_kwargs(BNVAE(), 30)) == {"vocab_size", *MODULE_PARAMS}
    assert module.latent_dim == 3 and module.decoder.embedding.embedding_dim == 6
    assert module.encoder.lstm.hidden_size == 20 and module.decoder.adaptive
    assert (module.decoder.dropout_in.p, module.decoder.dropout_out.p) == (0.15, 0.25)
    norm = module.mean_norm.norm
    assert norm.eps == 1e-7 and torch.equal(norm.weight, torch.full((3,), 0.4))


def test_an_old_pickle_gets_the_defaults_of_the_parameters_it_lacks():
    vae = BNVAE(embed_dim=8, hidden_dim=8, latent_dim=4, max_epochs=0, verbose=0, random_state=0)
    vae.fit(make_corpus(20)[0])
    state = vae.__getstate__()
    for name in ("softmax", "encoder", "freeze_encoder", "encoder_lr"):   # added after 0.1
        del state[name]
    old = BNVAE.__new__(BNVAE)
    old.__setstate__(state)
    assert old.get_params() == vae.get_params()
    assert pickle.loads(pickle.dumps(old)).transform(["good food"]).shape == (1, 4)
