"""The conditional VAE for dialogue responses (Zhao et al., ACL 2017) and its BN-CVAE
variant (Zhu et al., ACL 2020, section 4), in torch only.

A bidirectional GRU encodes each utterance; a GRU over the encodings of the
previous utterances (each with a one-hot "floor": was it said by the other
speaker or by the responder) gives the context c. The recognition network
q(z|c, y) reads c and the encoded response y, the prior network p(z|c) reads c;
both are diagonal Gaussians. The decoder GRU starts from a linear map of [c, z].
With ``bow=True`` a bag-of-words head predicts the response's words from [c, z]
(Zhao et al.'s auxiliary loss). With ``gamma > 0`` the posterior mean goes through
:class:`~ssl_textvae.nn.model.MeanBatchNorm` (scale fixed at gamma, shift learned):
BN-CVAE. The module returns per-example terms; :func:`training_loss` weighs them.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from ..nn.generation import decode_tokens
from ..nn.inference import eval_mode
from ..nn.model import MeanBatchNorm, gaussian_kl, sample_gaussian
from ..text.tokenization import PAD_ID

__all__ = ["ConditionalVAE", "ContextEncoder", "UtteranceEncoder", "gaussian_kl_between",
           "generate_ids", "total_kl", "training_loss"]

N_FLOORS = 2  # 0: said by the responder, 1: said by the other speaker


def gaussian_kl_between(mean_q, logvar_q, mean_p, logvar_p):
    """KL(N(mean_q, exp(logvar_q)) || N(mean_p, exp(logvar_p))) per dimension; broadcasts."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p).pow(2)) / logvar_p.exp() - 1.0)


def total_kl(mean_q, logvar_q, mean_p, logvar_p):
    """BN-CVAE's KL term, KL(q || p) + KL(p || N(0, I)), in closed form, per dimension:
    1/2 [(sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 + sigma_p^2 + mu_p^2 - log sigma_q^2 - 2].

    Zhu et al. print the constant as -1; each of the two KLs contributes -1, and only
    with -2 does the sum vanish when q = p = N(0, I), as the paper says it does.
    """
    return 0.5 * ((logvar_q.exp() + (mean_q - mean_p).pow(2)) / logvar_p.exp() + logvar_p.exp()
                  + mean_p.pow(2) - logvar_q - 2.0)


class UtteranceEncoder(nn.Module):
    """Bidirectional GRU over the embedded ``<s> w_1..w_n </s>``; the two last states,
    concatenated. (The embeddings are the model's, shared with the decoder.)"""

    def __init__(self, embed_dim, hidden_dim):
        super().__init__()
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden_dim

    def forward(self, embedded, lengths):
        # embedded: (n, time, embed); lengths: (n,) -> (n, 2 * hidden)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)                                           # (2, n, hidden)
        return last.transpose(0, 1).reshape(embedded.size(0), self.output_dim)


class ContextEncoder(nn.Module):
    """GRU over the utterance encodings of a context (plus their floor); its last state is c."""

    def __init__(self, input_dim, hidden_dim):
        super().__init__()
        self.gru = nn.GRU(input_dim + N_FLOORS, hidden_dim, batch_first=True)

    def forward(self, encodings, floors, sizes):
        # encodings: (n_utterances, utterance); floors: (n_utterances,) in {0, 1};
        # sizes: (batch,) utterances per context, the utterances stored context after context
        steps = torch.cat([encodings, F.one_hot(floors, N_FLOORS).to(encodings.dtype)], -1)
        batch, longest = sizes.size(0), int(sizes.max())
        padded = steps.new_zeros(batch, longest, steps.size(-1))             # (batch, turns, input)
        turn = torch.arange(longest, device=sizes.device).expand(batch, -1)  # (batch, turns)
        padded[turn < sizes.unsqueeze(1)] = steps
        packed = pack_padded_sequence(padded, sizes.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)                                           # (1, batch, hidden)
        return last.squeeze(0)                                               # (batch, hidden)


class ConditionalVAE(nn.Module):
    """CVAE / CVAE (BOW) / BN-CVAE for responses given a dialogue context.

    Parameters
    ----------
    vocab_size : int
    embed_dim : int
        Word embeddings, shared by the utterance encoder and the decoder. This and the
        settings after it are keyword-only, without defaults: a ``BNCVAE`` holds them.
    utterance_dim, context_dim, decoder_dim : int
        Hidden sizes of the utterance bi-GRU (each direction), the context GRU and the
        decoder GRU. Zhao et al. / Zhu et al.: 300, 600, 400.
    latent_dim : int
        Size of z (the papers: 200).
    gamma : float or None
        Fixed scale of the batch norm on the posterior mean mu_q (BN-CVAE); 0 or None: none.
    bow : bool
        Build the bag-of-words head (CVAE (BOW)).
    bn_eps : float
        Batch-norm epsilon (see :class:`~ssl_textvae.nn.model.MeanBatchNorm`).
    dropout : float
        Dropout on the decoder's input embeddings.
    """

    def __init__(self, vocab_size, *, embed_dim, utterance_dim, context_dim, decoder_dim, latent_dim,
                 gamma, bow, bn_eps, dropout):
        super().__init__()
        self.latent_dim = latent_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.utterance_encoder = UtteranceEncoder(embed_dim, utterance_dim)
        self.context_encoder = ContextEncoder(self.utterance_encoder.output_dim, context_dim)
        self.recognition = nn.Linear(context_dim + self.utterance_encoder.output_dim, 2 * latent_dim)
        # the hidden sizes of the prior (max(2 * latent, 100)) and bag-of-words (400) MLPs are Zhao et al.'s
        self.prior = nn.Sequential(nn.Linear(context_dim, max(latent_dim * 2, 100)), nn.Tanh(),
                                   nn.Linear(max(latent_dim * 2, 100), 2 * latent_dim))
        self.mean_norm = MeanBatchNorm(latent_dim, gamma, bn_eps) if gamma else nn.Identity()
        self.initial_state = nn.Linear(context_dim + latent_dim, decoder_dim)
        self.decoder_dropout = nn.Dropout(dropout)
        self.decoder = nn.GRU(embed_dim, decoder_dim, batch_first=True)
        self.output = nn.Linear(decoder_dim, vocab_size)
        self.bow_head = (nn.Sequential(nn.Linear(context_dim + latent_dim, 400), nn.Tanh(),
                                       nn.Linear(400, vocab_size)) if bow else None)
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            self.embedding.weight[PAD_ID].zero_()

    # -- the networks ------------------------------------------------------------
    def encode_context(self, utterances, utterance_lengths, floors, sizes):
        """c: (batch, context) from the utterances of each context (see ContextEncoder)."""
        encodings = self.utterance_encoder(self.embedding(utterances), utterance_lengths)    # (n_utterances, 2 * utt)
        return self.context_encoder(encodings, floors, sizes)

    def prior_params(self, context):
        # context: (batch, context) -> 2 x (batch, latent), in fp32
        mean, logvar = self.prior(context).float().chunk(2, -1)
        return mean, logvar

    def pre_norm_posterior(self, utterances, utterance_lengths, floors, sizes, response, response_lengths):
        """(mu_q before the batch norm, logvar_q) of a batch, each (batch, latent): the mean
        is what the norm's running statistics describe."""
        context = self.encode_context(utterances, utterance_lengths, floors, sizes)
        return self.recognition_params(context, response, response_lengths)

    def recognition_params(self, context, response, response_lengths):
        encoded = self.utterance_encoder(self.embedding(response), response_lengths)        # (batch, 2 * utt)
        mean, logvar = self.recognition(torch.cat([context, encoded], -1)).float().chunk(2, -1)
        return mean, logvar                                                  # 2 x (batch, latent)

    def posterior_params(self, context, response, response_lengths):
        """(mean, logvar) of q(z|c, y), each (batch, latent); the mean after the batch norm."""
        mean, logvar = self.recognition_params(context, response, response_lengths)
        return self.mean_norm(mean), logvar

    def decoder_states(self, inputs, context, z, state=None):
        # inputs: (batch, time) ids; context: (batch, context); z: (batch, latent)
        if state is None:
            start = self.initial_state(torch.cat([context, z.to(context.dtype)], -1))  # (batch, decoder)
            state = start.unsqueeze(0)                                       # (1, batch, decoder)
        outputs, state = self.decoder(self.decoder_dropout(self.embedding(inputs)), state)
        return outputs, state                                                # (batch, time, decoder)

    def reconstruction_nll(self, response, context, z):
        """-log p(y | c, z) summed over the response's tokens (words and ``</s>``): (batch,)."""
        inputs, targets = response[:, :-1], response[:, 1:]                  # (batch, time - 1)
        hidden, _ = self.decoder_states(inputs, context, z)
        keep = targets != PAD_ID                                             # (batch, time - 1)
        token_nll = F.cross_entropy(self.output(hidden[keep]).float(), targets[keep], reduction="none")
        rows = torch.arange(response.size(0), device=response.device).unsqueeze(1).expand_as(keep)[keep]
        return torch.zeros(response.size(0), device=response.device).index_add_(0, rows, token_nll)

    def bag_of_words_nll(self, response, context, z):
        """-sum over the response's words (and ``</s>``) of log softmax(bow_head([c, z])): (batch,)."""
        log_probs = F.log_softmax(self.bow_head(torch.cat([context, z.to(context.dtype)], -1)).float(), -1)
        targets = response[:, 1:]                                            # (batch, time - 1)
        picked = log_probs.gather(1, targets)                                # (batch, time - 1)
        return -(picked * (targets != PAD_ID)).sum(1)

    # -- the terms of the loss -------------------------------------------------------
    def forward(self, utterances, utterance_lengths, floors, sizes, response, response_lengths):
        """Per-example terms, each (batch,): ``reconstruction`` (one z from q), ``kl``
        = KL(q || p), ``prior_kl`` = KL(p || N(0, I)), ``posterior_kl`` = KL(q || N(0, I)),
        ``bow`` (zeros without the head); ``kl_per_dim`` (batch, latent) of KL(q || p)."""
        context = self.encode_context(utterances, utterance_lengths, floors, sizes)  # (batch, context)
        mean_q, logvar_q = self.posterior_params(context, response, response_lengths)
        mean_p, logvar_p = self.prior_params(context)
        z = sample_gaussian(mean_q, logvar_q, 1).squeeze(1)                  # (batch, latent)
        kl_per_dim = gaussian_kl_between(mean_q, logvar_q, mean_p, logvar_p)
        bow = (self.bag_of_words_nll(response, context, z) if self.bow_head is not None
               else torch.zeros(response.size(0), device=response.device))
        return {"reconstruction": self.reconstruction_nll(response, context, z),
                "kl": kl_per_dim.sum(1), "kl_per_dim": kl_per_dim,
                "prior_kl": gaussian_kl(mean_p, logvar_p).sum(1),
                "posterior_kl": gaussian_kl(mean_q, logvar_q).sum(1), "bow": bow}


def training_loss(terms, kl_weight=1.0, prior_penalty=False):
    """Mean over the batch of the loss Zhu et al. train: reconstruction + kl_weight * KL(q||p),
    plus KL(p || N(0, I)) for BN-CVAE (``prior_penalty``), plus the bag-of-words NLL
    (zeros when the model has no head)."""
    loss = terms["reconstruction"] + kl_weight * terms["kl"] + terms["bow"]
    if prior_penalty:
        loss = loss + terms["prior_kl"]
    return loss.mean()


def generate_ids(module, utterances, utterance_lengths, floors, sizes, n_samples=1, max_tokens=40,
                 temperature=0.0, generator: Optional[torch.Generator] = None) -> List[List[List[int]]]:
    """Responses decoded from z ~ p(z|c): for each context, ``n_samples`` lists of word ids
    (no ``<s>``/``</s>``). ``temperature`` 0 decodes greedily from each z (Zhao et al.);
    above 0 each token is drawn from softmax(logits / temperature). Eval mode, no autograd."""
    with eval_mode(module):
        context = module.encode_context(utterances, utterance_lengths, floors, sizes)  # (batch, ctx)
        batch = context.size(0)
        mean, logvar = module.prior_params(context)
        noise = torch.randn(batch, n_samples, mean.size(1), generator=generator,
                            device=generator.device if generator is not None else mean.device)
        z = mean.unsqueeze(1) + noise.to(mean.device) * (0.5 * logvar).exp().unsqueeze(1)
        z = z.reshape(batch * n_samples, -1)                                 # (batch * samples, latent)
        context = context.repeat_interleave(n_samples, 0)                    # (batch * samples, ctx)

        def next_scores(tokens, state):
            hidden, state = module.decoder_states(tokens, context, z, state)   # (rows, 1, decoder)
            return module.output(hidden[:, -1]), state                       # (rows, vocab)

        rows = decode_tokens(next_scores, batch * n_samples, context.device, max_tokens, temperature,
                             generator)
    return [rows[i * n_samples:(i + 1) * n_samples] for i in range(batch)]
