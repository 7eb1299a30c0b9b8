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

import contextlib
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


# The type of each config.json field an estimator reads besides its parameters.
FIELD_TYPES = {"class": str, "history": list, "vae_frozen": bool, "classes": list,
               "classes_dtype": str, "best_epoch": int, "vae_params": dict}


def saved_class(path) -> str:
    """The class name in ``path``/config.json (after checking its format version)."""
    config = _checked_version(path, read_json(path, CONFIG))
    check_field_types(path, config, ("class",))
    return config.get("class") or "?"


def read_config(path, expected, required):
    """config.json of a model directory, checked: a format this version reads, the
    class named ``expected``, the keys ``required`` and the types of the fields it
    holds (:data:`FIELD_TYPES`)."""
    config = _checked_version(path, read_json(path, CONFIG))
    check_field_types(path, config, FIELD_TYPES)
    if config.get("class") != expected:
        raise ValueError(f"{path!r} holds a {config.get('class')}, not a {expected}; load it with "
                         f"{config.get('class')}.load or ssl_textvae.load.")
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"{os.path.join(path, CONFIG)!r} lacks {missing}; the model directory is corrupt.")
    return config


def tampered(path, file, problem) -> ValueError:
    """The error for a field of ``path``/``file`` that no ``save`` writes."""
    return ValueError(f"{os.path.join(path, file)!r}: {problem}. The model directory was edited "
                      "or is corrupt; restore the file or save the model again.")


def check_field_types(path, config, names):
    """Each field of ``names`` present in ``config`` has its :data:`FIELD_TYPES` type."""
    for name in names:
        kind = FIELD_TYPES[name]
        value = config.get(name, kind())
        if not isinstance(value, kind) or kind is int and isinstance(value, bool):
            noun = {dict: "a JSON object", list: "a list", int: "an int"}.get(kind, f"a {kind.__name__}")
            raise tampered(path, CONFIG, f"{name} must be {noun}; got {value!r:.60}")


def check_params(path, params, estimator_class, constraints, not_saved=()):
    """``params`` of ``path``/config.json: a JSON object of parameters of
    ``estimator_class`` (but ``not_saved``), each inside its constraint (the ones
    ``fit`` checks)."""
    if not isinstance(params, dict):
        raise tampered(path, CONFIG, f"params must be a JSON object of {estimator_class.__name__} "
                                     f"parameters; got {type(params).__name__}")
    known = set(estimator_class._get_param_names()) - set(not_saved)
    for name, value in params.items():
        if name not in known:
            raise tampered(path, CONFIG, f"params.{name} is not a parameter of "
                                         f"{estimator_class.__name__}")
        if name in constraints and value not in constraints[name]:
            raise tampered(path, CONFIG, f"params.{name} must be {constraints[name]}; got {value!r:.60}")
    return params


def check_saved_setting(path, name, value, file, saved):
    """``value`` of ``name`` in config.json equals ``saved``, what ``file`` was written with."""
    if value != saved or type(value) is bool and type(saved) is not bool:
        raise ValueError(f"{os.path.join(path, CONFIG)!r} gives {name}={value!r}, but {file} was "
                         f"written with {name}={saved!r}: config.json was edited. Set {name} back "
                         f"to {saved!r} there; to use another {name}, fit a new model.")


@contextlib.contextmanager
def reading_field(path, field, file=CONFIG):
    """Turn an error while building ``field`` of ``path``/``file`` into a ``ValueError``
    naming both."""
    try:
        yield
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise tampered(path, file, f"{field} could not be read ({error})") from None


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


TOKENIZER_FIELDS = ("kind", "max_vocab_size", "min_frequency", "lowercase", "max_length", "tokenizer")


def load_tokenizer(path):
    """The ``TextTokenizer`` of ``path``/tokenizer.json, its fields checked."""
    from .tokenization import TextTokenizer

    state = read_json(path, TOKENIZER)
    if not isinstance(state, dict):
        raise tampered(path, TOKENIZER, f"expected a JSON object; got {type(state).__name__}")
    for name in state:
        if name not in TOKENIZER_FIELDS:
            raise tampered(path, TOKENIZER, f"{name} is not a field of a tokenizer")
    missing = [name for name in TOKENIZER_FIELDS if name not in state]
    if missing:
        raise ValueError(f"{os.path.join(path, TOKENIZER)!r} lacks {missing}; the model directory "
                         "is corrupt.")
    with reading_field(path, "tokenizer", TOKENIZER):
        try:
            return TextTokenizer.from_dict(state)
        except Exception as error:   # the Rust tokenizer's parse errors are plain Exceptions
            if isinstance(error, (TypeError, ValueError, KeyError, AttributeError)):
                raise
            raise ValueError(str(error)) from None


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
