"""What can go wrong while training, and how it is reported: the posterior means'
pre-batch-norm variance slipping under batch norm's eps (BN-VAE's KL bound then fails)
and a loss or gradient that is no longer finite."""

from __future__ import annotations

import math
import warnings


class TrainingDivergedError(FloatingPointError):
    """The training (or validation) loss or the gradient norm became NaN or infinite:
    the run diverged. Raised before the update of the offending step, so the weights
    hold the last finite state; the message names the epoch and step and what to change.

    See Also
    --------
    BNVAE : its ``lr``, ``clip_grad_norm`` and ``gamma``, the usual causes.

    Examples
    --------
    >>> from ssl_textvae import BNVAE, TrainingDivergedError
    >>> texts = ["good food", "bad service", "great place", "awful staff"] * 10
    >>> try:
    ...     BNVAE(lr=1e9, clip_grad_norm=None, max_epochs=2, embed_dim=8, hidden_dim=8,
    ...           latent_dim=2, batch_size=8, random_state=0, verbose=0).fit(texts)
    ... except TrainingDivergedError as error:
    ...     print("diverged")
    diverged
    """


class KLCollapseWarning(UserWarning):
    """The pre-batch-norm variance of the posterior means fell near batch norm's eps
    and the validation KL under BN-VAE's lower bound: the bound no longer holds.

    See Also
    --------
    BNVAE : its ``bn_eps`` and ``optimizer`` parameters (the default SGD keeps the bound).

    Examples
    --------
    >>> import warnings
    >>> from ssl_textvae import KLCollapseWarning
    >>> warnings.simplefilter("error", KLCollapseWarning)   # make a collapse stop training
    >>> warnings.resetwarnings()
    """


class KLExplosionWarning(UserWarning):
    """The validation KL of a BN-VAE is far above its bound: the posterior means blew up
    (batches of identical texts, or a pre-batch-norm spread too small for the precision).

    See Also
    --------
    KLCollapseWarning : the opposite failure, a KL under the bound.

    Examples
    --------
    >>> import warnings
    >>> from ssl_textvae import KLExplosionWarning
    >>> warnings.simplefilter("error", KLExplosionWarning)   # make it stop training
    >>> warnings.resetwarnings()
    """


def check_pre_bn_variance(module, record):
    """Record the smallest pre-BN variance of the means; warn when it is near eps and the
    validation KL is under 0.8 of the bound (held-out text meets the bound only roughly:
    0.89 to 1.0 of it in ``tests/test_kl_guarantee.py``). A small variance alone is no
    collapse: a tiny model after one epoch starts there, its weights near their small
    initialization, with its KL at the bound."""
    norm = getattr(getattr(module, "mean_norm", None), "norm", None)
    if norm is None:
        return
    smallest = float(norm.running_var.min())
    record["pre_bn_var_min"] = smallest
    if smallest >= 100 * norm.eps:
        return
    bound = 0.5 * float((norm.weight.detach().float() ** 2).sum())
    kl = record.get("valid_kl")
    if kl is not None and kl >= 0.8 * bound:
        return
    measured = "" if kl is None else f" and the validation KL to {kl:.3g} (bound {bound:.3g})"
    warnings.warn(f"The pre-batch-norm variance of a posterior mean fell to {smallest:.2e}, near "
                  f"batch norm's eps ({norm.eps:.0e}){measured}; BN-VAE's KL bound no longer "
                  "holds. Use the default optimizer ('sgd') or a smaller learning rate.",
                  KLCollapseWarning, stacklevel=3)


# A validation KL this many times BN-VAE's bound (plus one nat) is no posterior a language
# model learns: the means blew up (a batch of identical texts divided by sqrt(eps)).
KL_EXPLOSION_FACTOR = 100


def check_validation_kl(module, record):
    """Warn (``KLExplosionWarning``) when the validation KL of a BN-VAE exceeds
    ``KL_EXPLOSION_FACTOR`` times its bound plus one."""
    norm = getattr(getattr(module, "mean_norm", None), "norm", None)
    kl = record.get("valid_kl")
    if norm is None or kl is None:
        return
    bound = 0.5 * float((norm.weight.detach().float() ** 2).sum())
    if kl > KL_EXPLOSION_FACTOR * (bound + 1):
        warnings.warn(f"The validation KL is {kl:.3g} nats, over {KL_EXPLOSION_FACTOR} times BN-VAE's "
                      f"bound ({bound:.3g}): the posterior means blew up. Batches of (nearly) "
                      "identical texts, or a pre-batch-norm spread too small for the precision "
                      "(bf16 after one epoch of a tiny model), leave the batch norm dividing "
                      "rounding noise by a near-zero variance. Pretrain on more varied texts or "
                      "for more epochs, raise bn_eps, or use precision='fp32'.", KLExplosionWarning,
                      stacklevel=3)


# A finite loss this many times its start (plus one) has exploded: an lr far too large
# drives cross-entropy logits to 1e20 without ever reaching inf.
DIVERGENCE_FACTOR = 1e4


def divergence(loss, start=None):
    """How ``loss`` (a float) shows that a run diverged, or None: NaN or infinite, or
    over ``DIVERGENCE_FACTOR * (|start| + 1)`` where ``start`` is the run's first loss."""
    if not math.isfinite(loss):
        return f"became {loss:g}"
    if start is not None and loss > DIVERGENCE_FACTOR * (abs(start) + 1):
        return f"became {loss:.3g}, over {DIVERGENCE_FACTOR:g} times its start ({start:.3g})"
    return None


def check_loss(what, loss, start, epoch, step, batch_index, n_batches, optimizer, config, **kwargs):
    """Raise :func:`diverged_error` when :func:`divergence` finds ``loss`` diverged; the
    one check of the pretraining, fine-tuning and dialogue loops."""
    problem = divergence(loss, start)
    if problem is not None:
        raise diverged_error(f"{what} {problem}", epoch, step, batch_index, n_batches, optimizer,
                             config, **kwargs)


def diverged_error(what, epoch, step, batch_index, n_batches, optimizer, config, task="Pretraining",
                   prefix="", checkpoints=True):
    """A :class:`TrainingDivergedError` saying where (epoch, optimizer step) and what to do;
    ``prefix`` is that of the estimator's parameter names (``fine_tuning_``), ``checkpoints``
    whether the task writes any."""
    where = f"epoch {epoch + 1}"
    if batch_index is not None:
        where += f", batch {batch_index + 1} of {n_batches} (optimizer step {step})"
    elif n_batches is not None:
        where += f" (after optimizer step {step})"
    lr = optimizer.param_groups[0]["lr"]
    clipping = (f"{prefix}clip_grad_norm is {config.clip_grad_norm:g}" if config.clip_grad_norm
                else f"gradient clipping is off: set {prefix}clip_grad_norm (for example 5.0)")
    advice = ("the paper's SGD uses 1.0, Adam about 1e-3" if task == "Pretraining"
              else "Adam about 1e-3")
    message = (f"{task} diverged: {what} in {where}. The learning rate is {lr:g} and {clipping}. "
               f"Use a smaller {prefix}lr ({advice}), keep gradient clipping on, or train with "
               "precision='fp32'.")
    if checkpoints:
        message += (" " + ("The weights were not updated with this step; a " if batch_index is not None
                           else "A ") + "checkpoint_dir still holds the last finished epoch, but "
                    "resuming it repeats the same settings: delete the checkpoint to restart with "
                    "other ones.")
    return TrainingDivergedError(message)
