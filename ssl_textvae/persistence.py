"""Model directories that loading never executes code from.

    config.json        format version, package version, class, parameters, history
    tokenizer.json     vocabulary (Hugging Face tokenizers JSON)
    model.safetensors  VAE weights
    head.skops         the classifier's head (BNVAEClassifier only), loaded with
                       skops' trusted types

A FineTunedBNVAEClassifier's directory holds its config.json, the fine-tuned
encoder and head in fine_tuned.safetensors, and the BNVAE it started from in vae/.
"""

from __future__ import annotations

import json
import os

from ._version import __version__
from .tokenization import TextTokenizer

FORMAT_VERSION = 1
CONFIG, TOKENIZER, WEIGHTS, HEAD = "config.json", "tokenizer.json", "model.safetensors", "head.skops"
FINE_TUNED_WEIGHTS, FINE_TUNED_VAE = "fine_tuned.safetensors", "vae"


def save_model(estimator, path):
    from safetensors.torch import save_file
    from sklearn.utils.validation import check_is_fitted

    from .estimator import BNVAEClassifier

    is_classifier = isinstance(estimator, BNVAEClassifier)
    check_is_fitted(estimator, "estimator_" if is_classifier else "module_")
    vae = estimator.vae_ if is_classifier else estimator
    os.makedirs(path, exist_ok=True)
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in ("estimator", "vae")}
    config = {"format_version": FORMAT_VERSION, "ssl_textvae_version": __version__,
              "class": type(estimator).__name__, "params": _jsonable(params),
              "vae_params": _jsonable(vae.get_params(deep=False)), "history": vae.history_}
    with open(os.path.join(path, CONFIG), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    with open(os.path.join(path, TOKENIZER), "w", encoding="utf-8") as handle:
        json.dump(vae.tokenizer_.to_dict(), handle)
    weights = {k: v.detach().cpu().contiguous() for k, v in vae.module_.state_dict().items()}
    save_file(weights, os.path.join(path, WEIGHTS))
    if is_classifier:
        import skops.io

        skops.io.dump({"estimator": estimator.estimator, "estimator_": estimator.estimator_},
                      os.path.join(path, HEAD))


def load_model(path, expected, trusted=None):
    from .estimator import BNVAE, BNVAEClassifier, module_kwargs

    config = _read_config(path, expected, ("params", "vae_params", "history"))
    vae = BNVAE(**config["vae_params"])
    vae.tokenizer_ = TextTokenizer.from_dict(_read_json(path, TOKENIZER))
    vae.module_ = _load_module(path, module_kwargs(vae))
    vae.history_ = config["history"]
    vae.n_features_out_ = vae.latent_dim
    if expected is BNVAE:
        return vae
    head = _load_head(os.path.join(path, HEAD), trusted)
    classifier = BNVAEClassifier(estimator=head["estimator"], **config["params"])
    classifier.vae_, classifier.estimator_ = vae, head["estimator_"]
    classifier.classes_ = classifier.estimator_.classes_
    classifier.history_ = vae.history_
    return classifier


def save_fine_tuned(model, path):
    from safetensors.torch import save_file
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "module_")
    os.makedirs(path, exist_ok=True)
    save_model(model.vae, os.path.join(path, FINE_TUNED_VAE))
    params = {k: v for k, v in model.get_params(deep=False).items() if k != "vae"}
    config = {"format_version": FORMAT_VERSION, "ssl_textvae_version": __version__,
              "class": type(model).__name__, "params": _jsonable(params),
              "classes": model.classes_.tolist(), "classes_dtype": model.classes_.dtype.str,
              "history": model.history_, "best_epoch": model.best_epoch_}
    with open(os.path.join(path, CONFIG), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.module_.state_dict().items()}
    save_file(weights, os.path.join(path, FINE_TUNED_WEIGHTS))


def load_fine_tuned(path, expected):
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .estimator import BNVAE
    from .fine_tuning import _EncoderClassifier

    config = _read_config(path, expected, ("params", "classes", "classes_dtype", "history", "best_epoch"))
    vae = load_model(os.path.join(path, FINE_TUNED_VAE), expected=BNVAE)
    model = expected(vae=vae, **config["params"])
    model.classes_ = np.asarray(config["classes"], dtype=np.dtype(config["classes_dtype"]))
    model.module_ = _EncoderClassifier(vae.module_, len(model.classes_), model.dropout, model.features)
    file = os.path.join(path, FINE_TUNED_WEIGHTS)
    try:
        model.module_.load_state_dict(load_file(file))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ValueError(f"Could not read the weights in {file!r}: the file is missing, corrupt or "
                         f"does not match config.json ({error}).") from None
    model.module_.eval()
    model.history_, model.best_epoch_ = config["history"], config["best_epoch"]
    return model


def _read_config(path, expected, required):
    """config.json of a model directory, checked: the format this version reads, the
    class ``expected`` (the error names the class to load it with) and the keys
    ``required`` besides "class"."""
    config = _read_json(path, CONFIG)
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path!r} holds model format version {version!r} (written by ssl_textvae "
                         f"{config.get('ssl_textvae_version') if isinstance(config, dict) else '?'}); "
                         f"this ssl_textvae ({__version__}) reads format {FORMAT_VERSION}.")
    if "class" in config and config["class"] != expected.__name__:
        raise ValueError(f"{path!r} holds a {config['class']}, not a {expected.__name__}; load it with "
                         f"{config['class']}.load.")
    missing = [key for key in ("class", *required) if key not in config]
    if missing:
        raise ValueError(f"{os.path.join(path, CONFIG)!r} lacks {missing}; the model directory is corrupt.")
    return config


def _load_module(path, kwargs):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .model import TextVAE

    module = TextVAE(**kwargs)
    file = os.path.join(path, WEIGHTS)
    try:
        weights = load_file(file)
        module.load_state_dict(weights)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ValueError(f"Could not read the weights in {file!r}: the file is missing, corrupt or "
                         f"does not match config.json ({error}).") from None
    module.eval()
    return module


def _load_head(file, trusted):
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=file)
    except Exception as error:  # skops raises several kinds on a broken zip
        raise ValueError(f"Could not read the head in {file!r}: missing or corrupt ({error}).") from None
    refused = [name for name in untrusted if name not in (trusted or [])]
    if refused:
        raise ValueError(f"{file!r} holds types that are not trusted: {refused}. If you trust the "
                         "file, pass them as BNVAEClassifier.load(path, trusted=[...]).")
    return skops.io.load(file, trusted=untrusted or None)


def _read_json(path, name):
    file = os.path.join(path, name)
    try:
        with open(file, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file!r} not found; is {path!r} a directory written by save()?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file!r} is not valid JSON ({error}); the model directory is corrupt.") from None


def _jsonable(params):
    out = {}
    for name, value in params.items():
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (int, float, str, bool, type(None))):
            value = None  # a RandomState instance: the fitted model no longer needs it
        out[name] = value
    return out
