"""What can go wrong while training, and how it is reported: the posterior means'
pre-batch-norm variance slipping under batch norm's eps (BN-VAE's KL bound then fails)
and a loss or gradient that is no longer finite."""

from __future__ import annotations

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


def diverged_error(what, epoch, step, batch_index, n_batches, optimizer, config, run="Pretraining"):
    """A :class:`TrainingDivergedError` saying which ``run`` ("Fine-tuning"...), where
    (epoch, optimizer step) and what to do."""
    where = f"epoch {epoch + 1}"
    if batch_index is not None:
        where += f", batch {batch_index + 1} of {n_batches} (optimizer step {step})"
    elif n_batches is not None:
        where += f" (after optimizer step {step})"
    lr = optimizer.param_groups[0]["lr"]
    clipping = (f"clip_grad_norm is {config.clip_grad_norm:g}" if config.clip_grad_norm
                else "gradient clipping is off: set clip_grad_norm (5.0 by default)")
    return TrainingDivergedError(
        f"{run} diverged: {what} in {where}. The learning rate is {lr:g} and {clipping}. "
        f"Use a smaller lr (the paper's SGD uses 1.0, Adam about 1e-3), keep gradient clipping "
        f"on, or train with precision='fp32'. "
        + ("The weights were not updated with this step; a " if batch_index is not None else "A ")
        + "checkpoint_dir still holds the last finished epoch, but resuming it repeats the same "
        "settings: delete the checkpoint to restart with other ones.")
