"""How a model directory is written and how its files are tied together.

A save writes the whole directory beside the target and swaps it into place, so a
failed save leaves the model that was there intact. From format 3, config.json
records the SHA-256 of every other file (``files``), and the file holding the
weights (or the head) records the SHA-256 of config.json's other fields (the
*stamp*): a swapped file or an edited setting is refused by name on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil

CONFIG = "config.json"
STAMP = "config_sha256"   # the key of the stamp in safetensors metadata or a skops head
# The names a save writes; other entries of a model directory are never read or deleted.
SAVED_NAMES = frozenset({CONFIG, "tokenizer.json", "model.safetensors", "head.skops",
                         "fine_tuned.safetensors", "vae"})


class SaveError(OSError):
    """A save that failed; the directory saved to is as it was before."""


def config_stamp(config) -> str:
    """SHA-256 of the canonical JSON of ``config`` without its ``files`` (which hold
    the stamped file's own hash)."""
    fields = {key: value for key, value in config.items() if key != "files"}
    canonical = json.dumps(json.loads(json.dumps(fields)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_digest(file) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(path):
    """The files under ``path`` but config.json, as relative '/'-separated names;
    hidden names (a desktop's .DS_Store) are never part of a model."""
    names = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            relative = os.path.relpath(os.path.join(root, name), path).replace(os.sep, "/")
            if relative != CONFIG and not name.startswith("."):
                names.append(relative)
    return sorted(names)


def write_directory(path, config, write):
    """Write model directory ``path``: ``write(directory, stamp)`` writes every file
    but config.json into a fresh ``directory``, then config.json (``config`` plus
    the SHA-256 of each file) goes in last and the directory replaces ``path``."""
    stamp = config_stamp(config)
    with replacing(path) as directory:
        write(directory, stamp)
        files = {name: file_digest(os.path.join(directory, name)) for name in model_files(directory)}
        with open(os.path.join(directory, CONFIG), "w", encoding="utf-8") as handle:
            json.dump({**config, "files": files}, handle, indent=2)


@contextlib.contextmanager
def replacing(path):
    """A new directory beside ``path`` to write a model into; on success it takes
    the place of ``path``, on failure it is removed and ``path`` is left as it was.
    Entries of ``path`` that no save writes (a ``checkpoints/`` folder, notes) stay."""
    target = os.path.realpath(path)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise FileExistsError(f"Cannot save a model to {os.fspath(path)!r}: it is a file, not a "
                              "directory.")
    entries = os.listdir(target) if os.path.isdir(target) else None
    holds_model = bool(entries) and any(name in SAVED_NAMES for name in entries)
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    temporary = _fresh_sibling(parent, name, "tmp")
    try:
        if entries is not None:
            shutil.copymode(target, temporary)
        yield temporary
        if entries is None:
            os.rename(temporary, target)
        elif not holds_model:   # empty, or other files only: keep the directory itself
            _move(temporary, target, sorted(os.listdir(temporary), key=lambda entry: entry == CONFIG))
            os.rmdir(temporary)
        else:
            _swap(temporary, target, [name for name in entries if name not in SAVED_NAMES])
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if not isinstance(error, Exception):
            raise
        cause = error.__cause__ if isinstance(error, SaveError) else error   # a nested vae/ save
        kept = "the model that was there is untouched" if holds_model else "nothing was written there"
        message = (f"Could not save the model to {os.fspath(path)!r}; {kept} "
                   f"({type(cause).__name__}: {cause})")
        if isinstance(cause, OSError) and cause.errno:
            raise SaveError(cause.errno, message) from cause
        raise SaveError(message) from cause


def _fresh_sibling(parent, name, kind):
    for _ in range(100):
        candidate = os.path.join(parent, f".{name}.{kind}-{secrets.token_hex(4)}")
        try:
            os.mkdir(candidate)   # the umask's mode, unlike mkdtemp's 0o700
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary directory in {parent!r}.")


def _move(source, target, names):
    """Rename entries ``names`` of ``source`` into ``target``, in order; on a failure
    put back the ones moved."""
    moved = []
    try:
        for name in names:
            os.rename(os.path.join(source, name), os.path.join(target, name))
            moved.append(name)
    except BaseException:
        for name in moved:
            with contextlib.suppress(OSError):
                os.rename(os.path.join(target, name), os.path.join(source, name))
        raise


def _swap(new, target, carried):
    """Move the ``carried`` entries of ``target`` into ``new``, rename ``target`` away
    and ``new`` into its place, then delete the old one; on a failure put everything
    back."""
    parent, name = os.path.split(target)
    _move(target, new, carried)
    try:
        old = _fresh_sibling(parent, name, "old")
        os.rmdir(old)
        os.rename(target, old)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(old, target)
            raise
    except BaseException:
        _move(new, target, carried)
        raise
    shutil.rmtree(old, ignore_errors=True)


def mismatch(path, name, why) -> ValueError:
    return ValueError(f"{name} in {os.fspath(path)!r} does not match the model saved with it: {why}; "
                      "the directory was modified after saving. Restore the file or save the model "
                      "again.")


def check_files(path, config):
    """Each file ``path``/config.json lists has the SHA-256 it records, and every file
    a save writes under ``path`` is listed (format 3 and later)."""
    files = config["files"]
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in files.items()):
        raise mismatch(path, CONFIG, "its files must map file names to SHA-256 strings")
    on_disk = model_files(path)
    for name, digest in sorted(files.items()):
        if name not in on_disk:
            raise ValueError(f"{name} in {os.fspath(path)!r} is missing: config.json lists it among "
                             "the model's files. Restore it or save the model again.")
        if file_digest(os.path.join(path, name)) != digest:
            raise mismatch(path, name, "its SHA-256 differs from the one recorded in config.json")
    # A file no save writes (a note beside the model) is never read, so it may stay.
    unlisted = [name for name in on_disk if name not in files and name.split("/")[0] in SAVED_NAMES]
    if unlisted:
        raise mismatch(path, unlisted[0], "config.json does not list it among the files saved")


def check_stamp(path, config, stamp, file):
    """``stamp``, read from ``file``, is the SHA-256 of ``config``'s fields."""
    if stamp != config_stamp(config):
        why = ("its fields (parameters such as bn_eps, history, ...) differ from the ones "
               f"{file} was saved with (the SHA-256 recorded there)") if stamp else (
              f"{file} carries no SHA-256 of the config.json it was saved with")
        raise mismatch(path, CONFIG, why)
