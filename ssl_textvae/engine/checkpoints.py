"""Training checkpoints, one format for every task of :mod:`ssl_textvae.engine`: one
file per run directory, written atomically after each epoch, refused with a clear error when damaged, written for other data, another
configuration or another model, so an interrupted run resumes exactly where it was.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import asdict

import numpy as np
import torch

from ..text.data import EncodedCorpus

CHECKPOINT_NAME = "checkpoint.pt"


def data_fingerprint(train: EncodedCorpus, valid: EncodedCorpus, *extra) -> dict:
    """What a checkpoint records of the data it was trained on: the sizes of the
    training and validation splits and a SHA-256 of their token ids, in order (so
    other texts, another vocabulary or another split all differ), and of the integer
    arrays ``extra`` (labels; a dialogue's contexts)."""
    digest = hashlib.sha256()
    for corpus in (train, valid):
        for array in (corpus.offsets, corpus.ids):
            digest.update(np.ascontiguousarray(array, dtype=np.int64 if array is corpus.offsets
                                               else np.int32).tobytes())
        digest.update(b"|")
    for array in extra:
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes() + b"|")
    return {"train_texts": len(train), "valid_texts": len(valid),
            "train_tokens": int(len(train.ids)), "sha256": digest.hexdigest()}


def save_checkpoint(path, module, optimizer, config, state):
    payload = {"module": module.state_dict(), "optimizer": optimizer.state_dict(),
               "config": asdict(config), **{k: v for k, v in state.items() if k != "rng"},
               "rng": rng_to_tensor(state["rng"]),
               "best_loss": float(state["best_loss"])}  # a numpy float fails weights_only loading
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def _read_checkpoint(path):
    """The checkpoint's payload, or a ``ValueError`` naming the file and what to do
    when it is truncated, not a checkpoint or misses entries (not a raw zip, unpickling
    or EOF error)."""
    advice = (f"Delete {path!r} to start this run afresh, or pass another checkpoint_dir "
              "(the weights of a finished run are in its saved model, not in the checkpoint).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:   # zip reader, unpickler, EOFError, OSError...
        raise ValueError(f"Cannot read the checkpoint {path!r}: the file is truncated or corrupt "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                         f"). {advice}") from error
    missing = [key for key in ("module", "optimizer", "config", "epoch", "history", "best_loss",
                               "bad_epochs", "halvings", "best_weights", "torch_rng", "rng")
               if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise ValueError(f"The checkpoint {path!r} is not one this package wrote, or is damaged: "
                         f"it lacks {missing}. {advice}")
    return payload


def load_checkpoint(path, module, optimizer, config, data=None):
    payload = _read_checkpoint(path)
    saved = dict(payload["config"])
    current = asdict(config)
    for key in ("verbose", "max_epochs", "n_threads"):   # settings that leave the run as it is
        saved.pop(key, None), current.pop(key, None)
    if saved != current:
        raise ValueError(f"The checkpoint in {os.path.dirname(path)!r} was written with another "
                         f"training configuration ({saved}); expected {current}. Use another "
                         "checkpoint_dir or delete the checkpoint.")
    _check_same_data(path, payload.get("data"), data)
    check_same_module(path, module, payload["module"])
    module.load_state_dict(payload["module"])
    optimizer.load_state_dict(payload["optimizer"])
    state = {k: payload[k] for k in ("epoch", "history", "best_loss", "bad_epochs", "halvings",
                                     "best_weights", "torch_rng")}
    state["step"] = int(payload.get("step", 0))
    # written before the engine scored tuples: a pretraining's best loss
    finite = math.isfinite(state["best_loss"])
    state["best_score"] = payload.get("best_score", [-state["best_loss"]] if finite else None)
    state["best_epoch"] = payload.get("best_epoch")
    state["data"] = data
    state["rng"] = tensor_to_rng(payload["rng"])
    return state


def _check_same_data(path, saved, current):
    """Refuse to resume on other texts (another split of other data would go unnoticed)."""
    if saved is None or current is None:
        if saved is None and current is not None:
            warnings.warn(f"The checkpoint in {os.path.dirname(path)!r} was written before "
                          "checkpoints recorded their data; resuming without checking that the "
                          "texts are the same.", UserWarning, stacklevel=4)
        return
    if dict(saved) != current:
        raise ValueError(
            f"The checkpoint in {os.path.dirname(path)!r} was written for other training data "
            f"({saved['train_texts']} training and {saved['valid_texts']} validation texts, "
            f"{saved['train_tokens']} training tokens, token-id hash {saved['sha256'][:12]}); "
            f"these texts give {current['train_texts']}, {current['valid_texts']} and "
            f"{current['train_tokens']} (hash {current['sha256'][:12]}). Pass the same texts "
            "(and tokenizer settings) to resume, or use another checkpoint_dir or delete the "
            "checkpoint to train on these.")


def check_same_module(path, module, saved):
    """Refuse weights of another architecture or another fixed batch-norm scale (gamma)."""
    current = module.state_dict()
    same = set(saved) == set(current) and all(saved[k].shape == current[k].shape for k in current)
    same = same and all(torch.equal(saved[name].cpu(), parameter.detach().cpu())
                        for name, parameter in module.named_parameters() if not parameter.requires_grad)
    if not same:
        raise ValueError(f"The checkpoint in {os.path.dirname(path)!r} was written for another model "
                         "(other sizes, vocabulary or gamma). Use another checkpoint_dir or delete "
                         "the checkpoint.")


def rng_to_tensor(rng_state):
    # numpy's PCG64 state holds 128-bit ints, which weights_only loading cannot read back as ints
    inner = rng_state["state"]
    return {"state": str(inner["state"]), "inc": str(inner["inc"]),
            "has_uint32": rng_state["has_uint32"], "uinteger": rng_state["uinteger"]}


def tensor_to_rng(saved):
    return {"bit_generator": "PCG64", "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
            "has_uint32": saved["has_uint32"], "uinteger": saved["uinteger"]}


def restore_rngs(state, seed):
    """Seed torch's (forked) RNG (``seed`` None: go on with the caller's stream) or put
    back a checkpoint's state, and return the numpy ``Generator`` of the batch order at
    the checkpoint's state: what a resumed run needs to draw exactly what the
    uninterrupted run would have drawn."""
    if state["torch_rng"] is not None:
        torch.set_rng_state(state["torch_rng"])
    elif seed is not None:
        torch.manual_seed(seed)
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    return rng
