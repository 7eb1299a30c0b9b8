"""The text VAE of Zhu et al. (ACL 2020), in torch only.

LSTM encoder -> q(z|x) = N(mu, diag(sigma^2)); batch norm on mu with its scale fixed
at ``gamma`` (BN-VAE); LSTM decoder that reads z at every step and from its
initial state. The module returns per-example loss terms; how they are weighted
is the training loop's business.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .adaptive_softmax import SOFTMAXES, adaptive_cutoffs, adaptive_log_probs, adaptive_nll
from ..text.tokenization import PAD_ID

__all__ = ["MAX_CHUNK_LOGITS", "SOFTMAXES", "ChunkedSoftmaxNLL", "Decoder", "Dropout", "Encoder", "MeanBatchNorm", "ScaleFreeBatchNorm1d", "TextVAE", "adaptive_cutoffs",
           "gaussian_kl", "gaussian_log_density", "sample_gaussian"]


# At most this many logits (tokens x vocabulary) of the full softmax exist at once:
# 2^24 is 64 MiB in fp32. Longer batches are scored in chunks of tokens (see
# Decoder.max_chunk_logits), so memory no longer grows with vocabulary x text length.
MAX_CHUNK_LOGITS = 2**24


def padded_rows(n):
    """``n`` rounded up to one of 8 sizes per power of two (at most 1/8 more rows).

    The output layer sees one row per real token, a count that differs in nearly every
    batch. Under bf16 on CPU, oneDNN caches a matrix-product primitive per shape, each
    with its own packed copy of the vocabulary x hidden weight: over an epoch of short
    Yelp those grew the process by gigabytes. Few row counts keep that cache small."""
    step = max(16, 1 << max(0, n.bit_length() - 4))
    return -(-n // step) * step


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask from uniforms on CPU: torch's CPU ``bernoulli_``
    takes several times as long as ``rand`` and a comparison. Elsewhere (CUDA) it is ``nn.Dropout``."""

    def forward(self, inputs):
        if not self.training or not 0 < self.p < 1 or inputs.device.type != "cpu":
            return super().forward(inputs)
        scale = (torch.rand(inputs.shape) >= self.p).to(inputs.dtype).mul_(1.0 / (1.0 - self.p))
        return inputs * scale


class Encoder(nn.Module):
    """LSTM over ``<s> w_1..w_n </s>``; its last state gives (mean, logvar).

    ``dropout`` (on the embeddings and on the last state) is 0 in the VAE, as in the
    paper; fine-tuning with labels (:mod:`ssl_textvae.engine.fine_tuning`) sets it.
    """

    def __init__(self, vocab_size, embed_dim, hidden_dim, latent_dim, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.to_posterior = nn.Linear(hidden_dim, 2 * latent_dim)
        self.dropout = Dropout(dropout)

    def last_state(self, tokens, lengths):
        # tokens: (batch, time) = [<s> w_1..w_n </s> <pad>...]; lengths: (batch,)
        outputs, _ = self.lstm(self.dropout(self.embedding(tokens)))         # (batch, time, hidden)
        return outputs[torch.arange(tokens.size(0), device=tokens.device), lengths - 1]  # (batch, hidden)

    def forward(self, tokens, lengths):
        last = self.dropout(self.last_state(tokens, lengths))
        mean, logvar = self.to_posterior(last).float().chunk(2, dim=-1)     # 2 x (batch, latent)
        return mean, logvar


class ScaleFreeBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that divides by ``sqrt(max(var, eps))``, not ``sqrt(var + eps)``.

    With ``var + eps`` the output's scale is ``var / (var + eps)``: a gradient, tiny
    but never zero, that rewards shrinking the input's variance. Adam rescales
    gradients to a fixed step size, so it follows that leak whatever eps is: in fp32,
    with eps 1e-12, it drove BN-VAE's pre-BN variance from 4e-12 to 1e-15 within five
    epochs and the KL to 0.03 of its bound (``tests/test_kl_guarantee.py``). Above
    eps this normalization is exactly scale-free, so nothing pushes the variance down;
    eps is only a floor against dividing by zero. Eval mode (no gradients) keeps
    ``nn.BatchNorm1d``'s formula, so saved models encode as before. :meth:`batch_moments` is the one
    place that computes the training-mode moments (distributed pretraining takes
    them over all processes)."""

    def batch_moments(self, inputs):
        """(inputs - mean, mean, biased variance, rows) of a (batch, features) batch;
        the variance is taken around the mean, which stays exact when it is tiny next to
        the mean."""
        mean = inputs.mean(0)
        centered = inputs - mean
        return centered, mean, centered.pow(2).mean(0), inputs.new_tensor(float(inputs.size(0)))

    def forward(self, inputs):
        # inputs: (batch, features)
        if not self.training:   # nn.BatchNorm1d's own formula: saved models encode as before
            return (inputs - self.running_mean) * torch.rsqrt(self.running_var + self.eps) * self.weight + self.bias
        centered, mean, var, rows = self.batch_moments(inputs)
        with torch.no_grad():   # running statistics as nn.BatchNorm1d keeps them
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            unbiased = var.detach() * rows / (rows - 1).clamp(min=1)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        return centered * torch.rsqrt(var.clamp_min(self.eps)) * self.weight + self.bias


class MeanBatchNorm(nn.Module):
    """Batch norm on the posterior means with the scale fixed at ``gamma``.

    Only the shift is learned, so over a batch E[mu_i^2] = gamma^2 + beta_i^2 >= gamma^2
    and the expected KL cannot fall below latent_dim * gamma^2 / 2 (Zhu et al., 2020),
    as long as the pre-BN variance stays above ``eps``: :class:`ScaleFreeBatchNorm1d`
    gives no optimizer a reason to shrink it there (``nn.BatchNorm1d`` does).
    """

    def __init__(self, latent_dim, gamma, eps):
        super().__init__()
        self.norm = ScaleFreeBatchNorm1d(latent_dim, eps=eps)
        self.norm.weight.requires_grad_(False)
        with torch.no_grad():
            self.norm.weight.fill_(gamma)

    def forward(self, mean):
        # mean: (batch, latent); batch norm runs in fp32 even under autocast
        return self.norm(mean.float())


class ChunkedSoftmaxNLL(torch.autograd.Function):
    """Per-token negative log-likelihood under the full softmax, ``rows`` tokens at a
    time, with the gradients computed chunk by chunk in the forward pass: the
    (tokens, vocab) logits never exist whole, and nothing is recomputed.

    ``F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="none")``
    in value (bit for bit: the same operations per row). For each chunk the forward
    pass also forms ``softmax - onehot`` and from it the chunk's share of the
    gradients with respect to ``hidden`` (rows, hidden) and, summed over chunks in
    fp32, ``weight`` (vocab, hidden) and ``bias``, for an upstream gradient of 1 per
    token. The backward pass scales them by the upstream gradient: exactly right
    for ``hidden`` whatever that gradient is; for ``weight`` and ``bias`` when it is
    the same for every token, as in the ELBO (the mean over texts of summed token
    losses); otherwise the chunks are recomputed with each token's weight.
    Under autocast the products run in its dtype as ``nn.Linear``'s would.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows):
        # hidden: (tokens, hidden); weight: (vocab, hidden); bias: (vocab,); targets: (tokens,)
        nll = torch.empty(hidden.size(0), dtype=torch.float32, device=hidden.device)
        grad_hidden, grad_weight, grad_bias = None, None, None
        for start in range(0, hidden.size(0), rows):
            chunk = slice(start, start + rows)
            logits = F.linear(hidden[chunk], weight, bias)                   # (rows, vocab), autocast dtype
            log_probs = F.log_softmax(logits.float(), dim=-1)                # (rows, vocab) fp32
            picked = targets[chunk].unsqueeze(1)                             # (rows, 1)
            nll[chunk] = -log_probs.gather(1, picked).squeeze(1)
            scores = log_probs.exp_().scatter_add_(1, picked, torch.full_like(picked, -1.0, dtype=torch.float32))
            scores = scores.to(logits.dtype)                                 # softmax - onehot, (rows, vocab)
            hidden_chunk = hidden[chunk].to(logits.dtype)
            part = scores @ weight.to(logits.dtype)                         # (rows, hidden)
            if grad_hidden is None:
                grad_hidden = torch.empty(hidden.shape, dtype=part.dtype, device=hidden.device)
                grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                grad_bias = torch.zeros(weight.size(0), dtype=torch.float32, device=weight.device)
            grad_hidden[chunk] = part
            grad_weight += scores.t() @ hidden_chunk                         # (vocab, hidden)
            grad_bias += scores.sum(0, dtype=torch.float32)
        ctx.rows = rows
        ctx.save_for_backward(hidden, weight, bias, targets, grad_hidden, grad_weight, grad_bias)
        return nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_nll):
        # grad_nll: (tokens,)
        hidden, weight, bias, targets, grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_nll.unsqueeze(1)                                        # (tokens, 1)
        d_hidden = (grad_hidden * scale).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        uniform = bool((grad_nll == grad_nll[0]).all()) if grad_nll.numel() else True
        if uniform:
            g = grad_nll[0] if grad_nll.numel() else 0.0
            d_weight = (grad_weight * g).to(weight.dtype)
            d_bias = (grad_bias * g).to(bias.dtype)
        else:   # each token its own weight: rebuild the chunks' softmax - onehot
            d_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            d_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
            for start in range(0, hidden.size(0), ctx.rows):
                chunk = slice(start, start + ctx.rows)
                logits = F.linear(hidden[chunk].to(grad_hidden.dtype), weight.to(grad_hidden.dtype),
                                  bias.to(grad_hidden.dtype))
                scores = F.softmax(logits.float(), dim=-1)
                scores.scatter_add_(1, targets[chunk].unsqueeze(1),
                                    torch.full((scores.size(0), 1), -1.0, device=scores.device))
                scores = (scores * grad_nll[chunk].unsqueeze(1)).to(grad_hidden.dtype)
                d_weight += scores.t() @ hidden[chunk].to(grad_hidden.dtype)
                d_bias += scores.sum(0, dtype=torch.float32)
            d_weight, d_bias = d_weight.to(weight.dtype), d_bias.to(bias.dtype)
        return d_hidden, d_weight, d_bias, None, None


class Decoder(nn.Module):
    """LSTM language model conditioned on z; ``softmax="adaptive"`` replaces the full
    output layer by ``nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al., 2017; cutoffs
    from :func:`adaptive_cutoffs`): still a normalized distribution over the whole
    vocabulary, at a fraction of the cost, but another model than the paper's.

    The full softmax's loss materializes at most ``max_chunk_logits`` logits at a
    time (default :data:`MAX_CHUNK_LOGITS`, 2^24): a batch with more tokens x
    vocabulary is scored in chunks of tokens (:class:`ChunkedSoftmaxNLL`, which forms
    each chunk's gradients in the forward pass), with the same losses and gradients.
    Batches under the bound (on short Yelp, every training and validation batch)
    take the single-matrix path, unchanged."""

    def __init__(self, vocab_size, embed_dim, hidden_dim, latent_dim, dropout_in, dropout_out,
                 softmax, max_chunk_logits=None):
        super().__init__()
        if softmax not in SOFTMAXES:
            raise ValueError(f"softmax must be one of {SOFTMAXES}, got {softmax!r}.")
        self.max_chunk_logits = MAX_CHUNK_LOGITS if max_chunk_logits is None else int(max_chunk_logits)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.dropout_in = Dropout(dropout_in)
        self.latent_to_state = nn.Linear(latent_dim, hidden_dim)
        self.lstm = nn.LSTM(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.dropout_out = Dropout(dropout_out)
        self.adaptive = softmax == "adaptive"
        if self.adaptive:
            self.output = nn.AdaptiveLogSoftmaxWithLoss(hidden_dim, vocab_size,
                                                        adaptive_cutoffs(vocab_size), div_value=4.0)
        else:
            self.output = nn.Linear(hidden_dim, vocab_size)

    def next_token_scores(self, hidden):
        """Scores whose softmax is the next-token distribution, in fp32: the full output
        layer's logits, or the adaptive softmax's log-probabilities.
        (rows, hidden) -> (rows, vocab)."""
        if self.adaptive:
            return adaptive_log_probs(self.output, hidden)
        return self.output(hidden).float()

    def _token_nll(self, hidden, targets):
        # hidden: (tokens, hidden), targets: (tokens,) -> (tokens,) in fp32
        if self.adaptive:
            return adaptive_nll(self.output, hidden, targets)
        rows = max(1, self.max_chunk_logits // self.output.out_features)   # tokens per chunk
        n = hidden.size(0)
        if n <= rows:
            if hidden.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
                padded = min(padded_rows(n), rows)   # zero rows, cut off below: no gradient
                hidden, targets = F.pad(hidden, (0, 0, 0, padded - n)), F.pad(targets, (0, padded - n))
            return self._full_softmax_nll(hidden, targets)[:n]
        if torch.is_grad_enabled() and (hidden.requires_grad or self.output.weight.requires_grad):
            return ChunkedSoftmaxNLL.apply(hidden, self.output.weight, self.output.bias, targets, rows)
        return torch.cat([self._full_softmax_nll(hidden_chunk, target_chunk) for hidden_chunk, target_chunk
                          in zip(hidden.split(rows), targets.split(rows))])

    def _full_softmax_nll(self, hidden, targets):
        # hidden: (rows, hidden), targets: (rows,) -> (rows,); logits (rows, vocab) in fp32
        return F.cross_entropy(self.output(hidden).float(), targets, reduction="none")

    def hidden_states(self, inputs, z, state=None):
        # inputs: (batch, time) token ids; z: (batch, latent)
        embedded = self.dropout_in(self.embedding(inputs))                   # (batch, time, embed)
        z_steps = z.unsqueeze(1).expand(-1, inputs.size(1), -1)              # (batch, time, latent)
        if state is None:
            cell = self.latent_to_state(z).unsqueeze(0)                      # (1, batch, hidden)
            state = (torch.tanh(cell), cell)
        outputs, state = self.lstm(torch.cat([embedded, z_steps.to(embedded.dtype)], -1), state)
        return self.dropout_out(outputs), state                              # (batch, time, hidden)

    def reconstruction_nll(self, tokens, lengths, z):
        """Negative log-likelihood of each text given z, summed over its tokens
        (words and ``</s>``). The output layer runs on real tokens only, no padding.

        tokens: (batch, time); lengths: (batch,); z: (batch, samples, latent) -> (batch, samples)
        """
        batch, samples, latent = z.shape
        inputs, targets = tokens[:, :-1], tokens[:, 1:]                      # (batch, time - 1)
        inputs = inputs.repeat_interleave(samples, 0)                       # (batch * samples, time - 1)
        targets = targets.repeat_interleave(samples, 0)
        hidden, _ = self.hidden_states(inputs, z.reshape(batch * samples, latent))
        keep = targets != PAD_ID                                             # (batch * samples, time - 1)
        token_nll = self._token_nll(hidden[keep], targets[keep])              # (tokens,)
        rows = torch.arange(batch * samples, device=tokens.device).unsqueeze(1).expand_as(keep)[keep]
        nll = torch.zeros(batch * samples, device=tokens.device).index_add_(0, rows, token_nll)
        return nll.view(batch, samples)


class TextVAE(nn.Module):
    """LSTM text VAE; with ``gamma > 0`` the posterior means go through
    :class:`MeanBatchNorm` (BN-VAE), with ``gamma`` 0 or None it is a plain VAE.

    Parameters
    ----------
    vocab_size : int
    embed_dim, hidden_dim, latent_dim : int
        Keyword-only, as the settings after them: a ``BNVAE`` holds their defaults
        (``ssl_textvae.estimators.bnvae.module_kwargs`` reads them by name).
    gamma : float or None
        Fixed scale of the batch norm on the posterior means.
    dropout_in, dropout_out : float
        Dropout on the decoder's input embeddings and on its LSTM outputs.
    bn_eps : float
        Batch-norm epsilon (see :class:`MeanBatchNorm`).
    softmax : {"full", "adaptive"}
        The decoder's output distribution (see :class:`Decoder`).
    max_chunk_logits : int or None
        At most this many logits (tokens x vocabulary) of the full softmax at once;
        None is :data:`MAX_CHUNK_LOGITS` (see :class:`Decoder`). Not a weight: a
        module rebuilt from its weights gets the default, and setting
        ``module.decoder.max_chunk_logits`` changes it.
    encoder : nn.Module or None
        The inference network in place of the paper's LSTM: a
        :class:`~ssl_textvae.nn.pretrained.PretrainedEncoder`, which reads the third
        element of a batch (``encoder_inputs``, see :func:`ssl_textvae.text.data.collate`).
        None is the paper's :class:`Encoder`.
    """

    def __init__(self, vocab_size, *, embed_dim, hidden_dim, latent_dim, gamma, dropout_in, dropout_out,
                 bn_eps, softmax, max_chunk_logits=None, encoder=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.pretrained_encoder = encoder is not None
        self.encoder = Encoder(vocab_size, embed_dim, hidden_dim, latent_dim) if encoder is None else encoder
        self.mean_norm = MeanBatchNorm(latent_dim, gamma, bn_eps) if gamma else nn.Identity()
        self.decoder = Decoder(vocab_size, embed_dim, hidden_dim, latent_dim, dropout_in, dropout_out,
                               softmax, max_chunk_logits)
        self.reset_parameters()

    def reset_parameters(self):
        # He et al. (2019) / Zhu et al. (2020): small uniform weights, larger for embeddings.
        # An adaptive softmax keeps torch's initialization: its tail clusters are two
        # stacked linear maps, whose gradients would be products of two small weights.
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad or name.startswith("mean_norm"):
                continue
            if self.pretrained_encoder and name.startswith("encoder.backbone."):
                continue   # pretrained weights
            if self.decoder.adaptive and name.startswith("decoder.output."):
                continue
            bound = 0.1 if "embedding" in name else 0.01
            nn.init.uniform_(parameter, -bound, bound)

    def pre_norm_posterior(self, tokens, lengths, encoder_inputs=None):
        """(mean before the batch norm, logvar) of q(z|x), each (batch, latent)."""
        if self.pretrained_encoder:
            if encoder_inputs is None:
                raise ValueError("This VAE's inference network is a pretrained encoder: pass its "
                                 "inputs (the third element of ssl_textvae.text.data.collate).")
            return self.encoder(encoder_inputs)
        return self.encoder(tokens, lengths)

    def posterior(self, tokens, lengths, encoder_inputs=None):
        """(mean, logvar) of q(z|x), each (batch, latent); the mean after batch norm."""
        mean, logvar = self.pre_norm_posterior(tokens, lengths, encoder_inputs)
        return self.mean_norm(mean), logvar

    def forward(self, tokens, lengths, encoder_inputs=None, n_samples=1):
        """Per-example terms of the negative ELBO.

        Returns a dict with ``reconstruction`` (batch,), averaged over ``n_samples``
        draws of z; ``kl`` (batch,); ``kl_per_dim`` (batch, latent); ``mean``,
        ``logvar`` (batch, latent).
        """
        mean, logvar = self.posterior(tokens, lengths, encoder_inputs)
        z = sample_gaussian(mean, logvar, n_samples)                          # (batch, samples, latent)
        reconstruction = self.decoder.reconstruction_nll(tokens, lengths, z).mean(1)
        kl_per_dim = gaussian_kl(mean, logvar)
        return {"reconstruction": reconstruction, "kl": kl_per_dim.sum(1), "kl_per_dim": kl_per_dim,
                "mean": mean, "logvar": logvar}

    def autoencode(self, tokens, lengths, encoder_inputs=None):
        """The terms of :meth:`forward` with a deterministic code z = mu (an
        autoencoder, the no-KL baseline of Li et al., 2019): ``reconstruction`` is
        -log p(x | mu); ``kl`` and ``kl_per_dim`` are still reported, for monitoring.
        """
        mean, logvar = self.posterior(tokens, lengths, encoder_inputs)
        reconstruction = self.decoder.reconstruction_nll(tokens, lengths, mean.unsqueeze(1)).squeeze(1)
        kl_per_dim = gaussian_kl(mean, logvar)
        return {"reconstruction": reconstruction, "kl": kl_per_dim.sum(1), "kl_per_dim": kl_per_dim,
                "mean": mean, "logvar": logvar}


def sample_gaussian(mean, logvar, n_samples):
    # mean, logvar: (batch, latent) -> (batch, samples, latent)
    noise = torch.randn(mean.size(0), n_samples, mean.size(1), device=mean.device)
    return mean.unsqueeze(1) + noise * (0.5 * logvar).exp().unsqueeze(1)


def gaussian_log_density(z, mean, logvar):
    """log N(z; mean, diag(exp(logvar))) summed over the last dimension; broadcasts."""
    return -0.5 * (((z - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


def gaussian_kl(mean, logvar):
    """KL(N(mean, exp(logvar)) || N(0, I)) per dimension: (batch, latent)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)
