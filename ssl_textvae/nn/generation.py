"""Text from latent codes, in torch only: greedy or temperature sampling with the
decoder, one token at a time, from ``<s>`` until ``</s>`` or ``max_tokens``; the
conditional VAE's responses (:func:`ssl_textvae.dialogue.cvae.generate_ids`) share the loop.

The estimator wraps these as :meth:`BNVAE.sample` (z from the prior N(0, I)),
:meth:`BNVAE.reconstruct` (z = posterior mean) and :meth:`BNVAE.interpolate`
(z on the segment between two posterior means).
"""

from __future__ import annotations

from typing import List, Optional

import torch

from .inference import eval_mode
from ..text.tokenization import BOS_ID, EOS_ID, PAD_ID


def decode_latents(module, z: torch.Tensor, max_tokens: int = 40, temperature: float = 0.0,
                   generator: Optional[torch.Generator] = None) -> List[List[int]]:
    """Token ids decoded from each row of ``z`` (n, latent), without ``<s>`` and ``</s>``.

    ``temperature`` 0 is greedy (argmax, deterministic); above 0 each token is drawn
    from softmax(logits / temperature) with ``generator``. ``<pad>`` and ``<s>`` are
    never produced. Runs in eval mode (no dropout), without autograd.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature!r}.")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens!r}.")
    decoder = module.decoder
    with eval_mode(module):
        z = z.to(next(module.parameters()).device, torch.float32)            # (n, latent)

        def next_scores(tokens, state):
            hidden, state = decoder.hidden_states(tokens, z, state)           # (n, 1, hidden)
            return decoder.next_token_scores(hidden[:, -1]), state            # (n, vocab)

        return decode_tokens(next_scores, z.size(0), z.device, max_tokens, temperature, generator)


def decode_tokens(next_scores, n, device, max_tokens=40, temperature=0.0, generator=None):
    """The one decoding loop (a ``BNVAE``'s texts, a ``BNCVAE``'s responses): ``n`` rows
    from ``<s>``, ``next_scores(tokens (n, 1), state) -> (logits (n, vocab), state)`` one
    token at a time until every row has produced ``</s>`` or ``max_tokens`` tokens.
    Returns each row's ids without ``<s>`` and ``</s>``; ``<pad>`` and ``<s>`` are never
    produced. Sampling draws on ``generator``'s device."""
    tokens = torch.full((n, 1), BOS_ID, dtype=torch.long, device=device)     # (n, 1)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    state, generated = None, []
    for _ in range(max_tokens + 1):  # the last step can only end the text
        logits, state = next_scores(tokens, state)
        logits = logits.float()
        logits[:, [PAD_ID, BOS_ID]] = -float("inf")
        if temperature == 0:
            tokens = logits.argmax(-1, keepdim=True)                         # (n, 1)
        else:
            probabilities = torch.softmax(logits / temperature, -1)
            if generator is not None:
                probabilities = probabilities.to(generator.device)
            tokens = torch.multinomial(probabilities, 1, generator=generator).to(device)
        tokens = torch.where(finished.unsqueeze(1), torch.full_like(tokens, EOS_ID), tokens)
        generated.append(tokens)
        finished |= tokens.squeeze(1) == EOS_ID
        if bool(finished.all()):
            break
    ids = torch.cat(generated, 1).cpu().tolist()                             # (n, steps)
    return [row[:row.index(EOS_ID)] if EOS_ID in row else row[:max_tokens] for row in ids]


def interpolation_path(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points evenly spaced on the segment from ``start`` to ``end`` (both
    (latent,)), endpoints included: (steps, latent)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the two endpoints), got {steps!r}.")
    weights = torch.linspace(0, 1, steps, dtype=start.dtype).unsqueeze(1)     # (steps, 1)
    return (1 - weights) * start.unsqueeze(0) + weights * end.unsqueeze(0)
