"""Pieces of model directories that loading never executes code from.

Each estimator's ``save``/``load`` composes these; this module knows no estimator.

    config.json        format version, package version, class, parameters, history
    tokenizer.json     vocabulary (Hugging Face tokenizers JSON)
    *.safetensors      torch weights
    head.skops         a scikit-learn head, loaded with skops' trusted types only
    vae/               a nested BNVAE directory (in the classifiers' directories)

Format 2 nests the pretrained BNVAE of a classifier in ``vae/``. Format 1
directories (a BNVAE or BNVAEClassifier with its VAE at the top, a
FineTunedBNVAEClassifier with ``vae/``) are still read.
"""

from __future__ import annotations

import json
import os

from ._version import __version__

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CONFIG, TOKENIZER, WEIGHTS, HEAD = "config.json", "tokenizer.json", "model.safetensors", "head.skops"
VAE_DIR = "vae"


def write_config(path, class_name, **fields):
    """Create directory ``path`` and write its config.json: format and package
    version, ``class_name`` and ``fields`` (JSON-serializable)."""
    os.makedirs(path, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, "ssl_textvae_version": __version__,
              "class": class_name, **fields}
    with open(os.path.join(path, CONFIG), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)


def saved_class(path) -> str:
    """The class name in ``path``/config.json (after checking its format version)."""
    return _checked_version(path, read_json(path, CONFIG)).get("class") or "?"


def read_config(path, expected, required):
    """config.json of a model directory, checked: a format this version reads, the
    class named ``expected`` and the keys ``required``."""
    config = _checked_version(path, read_json(path, CONFIG))
    if config.get("class") != expected:
        raise ValueError(f"{path!r} holds a {config.get('class')}, not a {expected}; load it with "
                         f"{config.get('class')}.load or ssl_textvae.load.")
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"{os.path.join(path, CONFIG)!r} lacks {missing}; the model directory is corrupt.")
    return config


def _checked_version(path, config):
    version = config.get("format_version") if isinstance(config, dict) else None
    if version not in READABLE_VERSIONS:
        written_by = config.get("ssl_textvae_version") if isinstance(config, dict) else "?"
        raise ValueError(f"{path!r} holds model format version {version!r} (written by ssl_textvae "
                         f"{written_by}); this ssl_textvae ({__version__}) reads formats "
                         f"{', '.join(map(str, READABLE_VERSIONS))}.")
    return config


def save_weights(module, file):
    """The module's state dict, on the CPU, as safetensors."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, file)


def load_weights(module, file):
    """Load safetensors ``file`` into ``module`` (strict) and put it in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(file))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ValueError(f"Could not read the weights in {file!r}: the file is missing, corrupt or "
                         f"does not match config.json ({error}).") from None
    return module.eval()


def save_tokenizer(tokenizer, path):
    with open(os.path.join(path, TOKENIZER), "w", encoding="utf-8") as handle:
        json.dump(tokenizer.to_dict(), handle)


def load_tokenizer(path):
    from .tokenization import TextTokenizer

    return TextTokenizer.from_dict(read_json(path, TOKENIZER))


def save_head(objects, path):
    """A dict of scikit-learn objects as ``path``/head.skops."""
    import skops.io

    skops.io.dump(objects, os.path.join(path, HEAD))


def load_head(path, trusted=None):
    """What :func:`save_head` wrote, with skops' default trusted types plus ``trusted``."""
    import skops.io

    file = os.path.join(path, HEAD)
    try:
        untrusted = skops.io.get_untrusted_types(file=file)
    except Exception as error:  # skops raises several kinds on a broken zip
        raise ValueError(f"Could not read the head in {file!r}: missing or corrupt ({error}).") from None
    refused = [name for name in untrusted if name not in (trusted or [])]
    if refused:
        raise ValueError(f"{file!r} holds types that are not trusted: {refused}. If you trust the "
                         "file, pass them as load(path, trusted=[...]).")
    return skops.io.load(file, trusted=untrusted or None)


def read_json(path, name):
    file = os.path.join(path, name)
    try:
        with open(file, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file!r} not found; is {path!r} a directory written by save()?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file!r} is not valid JSON ({error}); the model directory is corrupt.") from None


def jsonable(params):
    """Parameters as JSON values; a RandomState instance (which the fitted model no
    longer needs) becomes None."""
    out = {}
    for name, value in params.items():
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (int, float, str, bool, type(None))):
            value = None
        out[name] = value
    return out
