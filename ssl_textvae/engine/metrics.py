"""Language-model metrics of a text VAE, in torch only, always in eval mode.

Definitions follow He et al. (ICLR 2019, "Lagging Inference Networks and Posterior
Collapse in Variational Autoencoders") and Zhu et al. (2020):

- negative ELBO per text, split into reconstruction and KL (one z sample);
- importance-weighted NLL with k samples from q(z|x) (Burda et al., 2016), and
  perplexity exp(NLL * n_texts / n_tokens) with ``</s>`` counted as a token;
- mutual information I(x; z) under q, with the aggregate posterior over the
  evaluated texts (``calc_mi`` of He et al.'s code);
- active units: latent dimensions whose posterior mean varies across the data by
  more than 0.01;
- the KL per latent dimension.

:func:`evaluate` computes them all and prints a table.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np
import torch
from tqdm.auto import tqdm

from ..text.data import EncodedCorpus, n_batches
from ..nn.inference import batches, encode_posteriors, eval_mode
from ..nn.model import gaussian_kl, gaussian_log_density
from ..runtime.devices import autocast_context

ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of dimensions with Var_x(E_q[z|x]) above ``threshold``; means: (n, latent)."""
    if means.size(0) < 2:
        return 0
    return int((means.double().var(0) > threshold).sum())


def elbo_sums(module, corpus: EncodedCorpus, device, batch_size=256, precision="fp32"):
    """Reconstruction and KL terms summed over the texts (one z sample each), a float64
    array (2,), and the posterior means, (n_texts, latent) on the CPU; in eval mode.
    Sums, so that shards of a corpus add up (:mod:`ssl_textvae.engine.distributed`)."""
    sums = np.zeros(2)
    means = []
    with eval_mode(module):
        for _, inputs in batches(corpus, batch_size, device):
            with autocast_context(device, precision):
                terms = module(*inputs)
            sums += [terms["reconstruction"].sum().item(), terms["kl"].sum().item()]
            means.append(terms["mean"].float().cpu())
    return sums, torch.cat(means) if means else torch.zeros(0, module.latent_dim)


def evaluate_elbo(module, corpus: EncodedCorpus, device, batch_size=256, precision="fp32"):
    """Negative ELBO per text (one z sample), its reconstruction and KL terms, and
    the active units, all in eval mode."""
    sums, means = elbo_sums(module, corpus, device, batch_size, precision)
    reconstruction, kl = sums / max(len(corpus), 1)
    return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl,
            "active_units": active_units(means)}


def evaluate_reconstruction_at_mean(module, corpus: EncodedCorpus, device, batch_size=256,
                                    precision="fp32") -> float:
    """-log p(x | z = mu) per text, averaged: the loss of an autoencoder."""
    total = 0.0
    with eval_mode(module):
        for _, inputs in batches(corpus, batch_size, device):
            with autocast_context(device, precision):
                terms = module.autoencode(*inputs)
            total += terms["reconstruction"].sum().item()
    return total / max(len(corpus), 1)


def kl_per_dimension(means: torch.Tensor, logvars: torch.Tensor) -> np.ndarray:
    """KL(q(z_d|x) || N(0, 1)) averaged over texts, per latent dimension: (latent,).
    Its sum is the KL term of the negative ELBO."""
    return gaussian_kl(means.double(), logvars.double()).mean(0).numpy()


def mutual_information(means: torch.Tensor, logvars: torch.Tensor, random_state=None,
                       chunk_size=512) -> float:
    """I(x; z) under q(z|x) with the data distribution the evaluated texts.

    I = E_x E_q(z|x)[log q(z|x)] - E_x E_q(z|x)[log q(z)], where q(z) is the
    aggregate posterior, the average of q(z|x') over the ``n`` texts; one z is
    drawn per text, as in ``calc_mi`` of He et al. (2019), and q(z) averages over
    all ``n`` texts rather than per batch. Unlike ``calc_mi``, which takes the
    first term in closed form (minus the Gaussian entropy), both terms are
    evaluated at the same z: the estimate has the same expectation, much less
    variance, and is exactly 0 when every posterior is the same distribution.
    It lies in [0, log n] up to sampling noise.

    means, logvars: (n, latent). Memory is bounded by ``chunk_size * n``.
    """
    means, logvars = means.double(), logvars.double()
    n, latent = means.shape
    if n < 2:
        raise ValueError(f"mutual_information needs at least 2 texts, got {n}.")
    with _seeded(random_state):
        z = means + torch.randn(n, latent, dtype=torch.float64) * (0.5 * logvars).exp()  # (n, latent)
    log_q_z_given_x = gaussian_log_density(z, means, logvars)            # (n,)
    precision = (-logvars).exp()                                          # (n, latent)
    scaled_means = means * precision                                     # (n, latent)
    offsets = -0.5 * ((means ** 2 * precision).sum(-1) + logvars.sum(-1)
                      + latent * math.log(2 * math.pi))                  # (n,)
    log_qz = torch.zeros(n, dtype=torch.float64)
    for start in range(0, n, chunk_size):
        block = z[start:start + chunk_size]                              # (chunk, latent)
        # log q(z_i | x_j) for every sample i of the block and every text j: (chunk, n)
        log_density = -0.5 * (block ** 2) @ precision.T + block @ scaled_means.T + offsets
        log_qz[start:start + chunk_size] = torch.logsumexp(log_density, 1) - math.log(n)
    return float((log_q_z_given_x - log_qz).mean())


def iw_nll(module, corpus: EncodedCorpus, device, n_samples=500, batch_size=16, chunk_size=32,
           random_state=None, verbose=0) -> np.ndarray:
    """Importance-weighted estimate of -log p(x) per text (Burda et al., 2016), with
    q(z|x) as the proposal:

        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k.

    It is an upper bound on the NLL that tightens as ``n_samples`` grows; with one
    sample it is the negative ELBO (single-sample estimate). The decoder runs on
    ``batch_size * chunk_size`` rows at a time, so memory stays bounded for any k.

    Returns an array (n_texts,) in corpus order, in nats.
    """
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}.")
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}.")
    out = np.zeros(len(corpus))
    progress = tqdm(batches(corpus, batch_size, device), total=n_batches(len(corpus), batch_size), desc=f"IW-NLL (k={n_samples})", unit="batch", leave=False,
                    disable=not verbose)
    with eval_mode(module), _seeded(random_state, device):
        for indices, inputs in progress:
            tokens, lengths = inputs[:2]
            mean, logvar = module.posterior(*inputs)                         # (batch, latent)
            log_weights = []
            for start in range(0, n_samples, chunk_size):
                k = min(chunk_size, n_samples - start)
                noise = torch.randn(mean.size(0), k, mean.size(1), device=device)
                z = mean.unsqueeze(1) + noise * (0.5 * logvar).exp().unsqueeze(1)  # (batch, k, latent)
                log_likelihood = -module.decoder.reconstruction_nll(tokens, lengths, z)  # (batch, k)
                log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                log_posterior = gaussian_log_density(z, mean.unsqueeze(1), logvar.unsqueeze(1))
                log_weights.append((log_likelihood + log_prior - log_posterior).double())
            log_weights = torch.cat(log_weights, 1)                          # (batch, n_samples)
            nll = math.log(n_samples) - torch.logsumexp(log_weights, 1)      # (batch,)
            out[indices] = nll.cpu().numpy()
    return out


def perplexity(nll, n_texts, n_tokens) -> float:
    """exp(NLL * n_texts / n_tokens): ``nll`` is the mean per text in nats and
    ``n_tokens`` counts every predicted token, ``</s>`` included."""
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}.")
    return float(math.exp(nll * n_texts / n_tokens))


def evaluate(module, corpus, n_importance_samples=500, *, batch_size=16, chunk_size=32,
             random_state=0, device=None, verbose=1) -> dict:
    """Language-model metrics of a text VAE on an encoded corpus, in eval mode
    (``BNVAE.evaluate`` encodes texts and calls this).

    Parameters
    ----------
    module : TextVAE
    corpus : EncodedCorpus
        The texts, encoded by the tokenizer the module was trained with (``BNVAE.encode``).
    n_importance_samples : int, default=500
        Samples k of the importance-weighted NLL (the field uses 500).
    batch_size, chunk_size : int, default=16, 32
        Texts per encoder batch and samples per decoder call for the IW-NLL.
    random_state : int or None, default=0
        Seeds the z samples; torch's global RNG is left as it was.
    device : str, torch.device or None
        None: where the module's weights are.
    verbose : int, default=1
        1 prints a table (and shows progress).

    Returns
    -------
    dict
        ``n_texts``, ``n_tokens`` (``</s>`` included), ``neg_elbo``,
        ``reconstruction``, ``kl`` (per text, nats), ``iw_nll``, ``perplexity``
        (from the IW-NLL), ``elbo_perplexity`` (from the negative ELBO),
        ``mutual_information``, ``active_units``, ``latent_dim``, ``kl_per_dim``
        (list, one value per dimension), ``n_importance_samples``.
    """
    module, device = _checked_module(module, corpus, device)
    if len(corpus) < 2:
        raise ValueError(f"evaluate needs at least 2 texts, got {len(corpus)}.")
    with _seeded(random_state, device):
        elbo = evaluate_elbo(module, corpus, device, batch_size=256)
    means, logvars = encode_posteriors(module, corpus, device)
    nll = iw_nll(module, corpus, device, n_importance_samples, batch_size, chunk_size,
                 random_state, verbose).mean()
    n_tokens = corpus.n_tokens()
    results = {
        "n_texts": len(corpus), "n_tokens": n_tokens,
        "neg_elbo": float(elbo["loss"]), "reconstruction": float(elbo["reconstruction"]),
        "kl": float(elbo["kl"]), "iw_nll": float(nll),
        "perplexity": perplexity(nll, len(corpus), n_tokens),
        "elbo_perplexity": perplexity(elbo["loss"], len(corpus), n_tokens),
        "mutual_information": mutual_information(means, logvars, random_state),
        "active_units": active_units(means), "latent_dim": int(means.size(1)),
        "kl_per_dim": [float(v) for v in kl_per_dimension(means, logvars)],
        "n_importance_samples": int(n_importance_samples),
    }
    if verbose:
        print(format_table(results))
    return results


def format_table(results: dict) -> str:
    """The dict of :func:`evaluate` as a plain-text table."""
    k = results["n_importance_samples"]
    rows = [("texts", f"{results['n_texts']}"),
            ("tokens (with </s>)", f"{results['n_tokens']}"),
            ("negative ELBO per text", f"{results['neg_elbo']:.3f}"),
            ("  reconstruction", f"{results['reconstruction']:.3f}"),
            ("  KL", f"{results['kl']:.3f}"),
            (f"IW-NLL per text (k={k})", f"{results['iw_nll']:.3f}"),
            (f"perplexity (IW, k={k})", f"{results['perplexity']:.2f}"),
            ("perplexity (ELBO)", f"{results['elbo_perplexity']:.2f}"),
            ("mutual information I(x;z)", f"{results['mutual_information']:.3f}"),
            ("active units", f"{results['active_units']} / {results['latent_dim']}")]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 10}"]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    per_dim = results["kl_per_dim"]
    lines.append("KL per dimension:")
    for start in range(0, len(per_dim), 8):
        lines.append("  " + " ".join(f"{v:6.3f}" for v in per_dim[start:start + 8]))
    return "\n".join(lines)


def _checked_module(module, corpus, device):
    """``(module, device)``, the module moved to ``device``; torch objects only."""
    if not (isinstance(module, torch.nn.Module) and hasattr(module, "posterior")):
        raise TypeError(f"Expected a TextVAE module, got {type(module).__name__}. A fitted BNVAE "
                        "evaluates texts itself: vae.evaluate(texts) (a classifier's: clf.vae_).")
    if not isinstance(corpus, EncodedCorpus):
        raise TypeError("corpus must be an EncodedCorpus (encode the texts with the model's "
                        f"tokenizer: vae.encode(texts)); got {type(corpus).__name__}.")
    device = torch.device(device) if device is not None else next(module.parameters()).device
    return module.to(device), device


@contextlib.contextmanager
def _seeded(random_state, device=None):
    """Seed torch's RNG inside the block and restore the global state after it."""
    if random_state is None:
        yield
        return
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(random_state))
        yield
