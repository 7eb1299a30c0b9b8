"""Pieces of model directories that loading never executes code from.

Each estimator's ``save``/``load`` composes these; this module knows no estimator.

    config.json        format version, package version, class, parameters, history
    tokenizer.json     vocabulary (Hugging Face tokenizers JSON)
    *.safetensors      torch weights
    head.skops         a scikit-learn head, loaded with skops' trusted types only
    vae/               a nested BNVAE directory (in the classifiers' directories)

Format 3 ties the files together (:mod:`ssl_textvae.estimators._model_files`): config.json
records the SHA-256 of every other file, and the weights (or the head) the SHA-256
of config.json's fields, so a swapped file or an edited setting is refused; a save
replaces the directory as a whole or, failing, leaves it as it was. Format 2 nests
the pretrained BNVAE of a classifier in ``vae/``. Format 1 directories (a BNVAE or
BNVAEClassifier with its VAE at the top, a FineTunedBNVAEClassifier with ``vae/``)
and format 2 ones are still read, without those checks.
"""

from __future__ import annotations

import contextlib
import json
import os

from . import _model_files
from ._model_files import STAMP, SaveError  # noqa: F401 (callers catch persistence.SaveError)
from .._version import __version__

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CONFIG, TOKENIZER, WEIGHTS, HEAD = "config.json", "tokenizer.json", "model.safetensors", "head.skops"
VAE_DIR = "vae"


def save_directory(path, class_name, write, **fields):
    """Write model directory ``path`` as a whole: ``write(directory, stamp)`` writes
    the files but config.json into a new directory (the file holding the weights or
    the head records ``stamp``), then config.json gets format and package version,
    ``class_name``, ``fields`` (JSON-serializable) and each file's SHA-256, and the
    directory replaces ``path``. Raises :class:`SaveError` (an ``OSError``) when
    anything fails, with ``path`` left as it was."""
    config = {"format_version": FORMAT_VERSION, "ssl_textvae_version": __version__,
              "class": class_name, **fields}
    _model_files.write_directory(path, config, write)


def check_saved_files(path, config, stamp, file):
    """From format 3: every file in ``path`` is the one saved with its config.json,
    and ``stamp`` (read from ``file``) matches config.json's fields. Called last in a
    load, so a corrupt file is reported by what is wrong with it first."""
    if config["format_version"] >= 3:
        _model_files.check_files(path, config)
        _model_files.check_stamp(path, config, stamp, file)


def check_trusted(trusted):
    """``trusted`` as a list of exact type names: None or a list/tuple of str. A str
    would be read as substrings, so it is refused like any other type."""
    if trusted is None:
        return []
    if isinstance(trusted, (list, tuple)) and all(isinstance(name, str) for name in trusted):
        return list(trusted)
    hint = (f"; to trust one type, pass a list: trusted=[{trusted!r}]" if isinstance(trusted, str)
            else "")
    raise TypeError("trusted must be None or a list of type names (str) to trust exactly, such as "
                    f"['mypackage.MyScaler']; got {type(trusted).__name__} {trusted!r:.80}{hint}.")


# The type of each config.json field an estimator reads besides its parameters.
FIELD_TYPES = {"class": str, "history": list, "vae_frozen": bool, "classes": list,
               "classes_dtype": str, "best_epoch": int, "vae_params": dict, "files": dict}


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
    if config["format_version"] >= 3:
        required = (*required, "files")   # the SHA-256 of each file
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


def save_weights(module, file, stamp):
    """The module's state dict, on the CPU, as safetensors; its metadata records
    ``stamp`` (see :func:`save_directory`)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, file,
              metadata={STAMP: stamp})


def weights_stamp(file):
    """The stamp in the metadata of safetensors ``file`` (None before format 3)."""
    from safetensors import safe_open

    with safe_open(file, framework="pt") as handle:
        return (handle.metadata() or {}).get(STAMP)


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
    from ..text.tokenization import TextTokenizer

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
    """What :func:`save_head` wrote, with skops' default trusted types plus ``trusted``
    (None or a list of exact type names)."""
    import skops.io

    trusted = check_trusted(trusted)
    file = os.path.join(path, HEAD)
    try:
        untrusted = skops.io.get_untrusted_types(file=file)
    except Exception as error:  # skops raises several kinds on a broken zip
        raise ValueError(f"Could not read the head in {file!r}: missing or corrupt ({error}).") from None
    refused = [name for name in untrusted if name not in trusted]
    if refused:
        raise ValueError(f"{file!r} holds types that are not trusted: {refused}. If you trust the "
                         "file, pass them as load(path, trusted=[...]).")
    return skops.io.load(file, trusted=untrusted or None)


def read_json(path, name):
    if os.path.isfile(path):
        directory = os.path.dirname(os.path.abspath(path))
        hint = f"; pass {directory!r}, the directory it is in" if os.path.basename(path) == CONFIG else ""
        raise ValueError(f"{os.fspath(path)!r} is a file; a model directory (the one save wrote) is "
                         f"expected{hint}.")
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
