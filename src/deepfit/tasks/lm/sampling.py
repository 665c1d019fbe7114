"""Sampling tokens from a GPT: temperature, top-k and top-p through a key/value cache.

:func:`sample_tokens` extends a token list; with ``use_cache=False`` it recomputes the whole
window every step (the reference the cache is tested against).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from deepfit.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from deepfit.models.gpt import GPT

__all__ = ["sample_tokens"]


def sample_tokens(model: GPT, ids: list[int], *, max_tokens: int, temperature: float = 0.8,
                  top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                  use_cache: bool = True, banned: tuple[int, ...] = (0, 1),
                  logits_out: list[torch.Tensor] | None = None,
                  on_token: Callable[[list[int]], None] | None = None) -> list[int]:
    """Extend ``ids`` by ``max_tokens`` sampled tokens; returns the new ids.

    With ``use_cache`` (the default) each new token costs one position through the model
    (:class:`~deepfit.models.gpt.KVCache`); without it the whole window is recomputed every step
    (the reference the cache is tested against). When ``ids`` plus the new tokens overflow the
    context window, the last half window is kept and recomputed. ``banned`` ids (padding and
    unknown) are never sampled; ``logits_out`` collects each step's logits; ``on_token`` is
    called with the new ids so far after each token (streaming; an exception it raises stops
    the generation).
    """
    import torch

    from deepfit.models.gpt import KVCache

    if not ids:
        raise DataError("generation needs at least one token of context")
    window = model.context
    seq = list(ids[-window:])
    new: list[int] = []
    cache = KVCache.empty(model) if use_cache else None
    with torch.inference_mode():
        logits = model(torch.tensor([seq]), cache)[0, -1]  # (V,)
        for _ in range(max_tokens):
            logits = logits.float().clone()
            if banned:
                logits[list(banned)] = -math.inf
            if logits_out is not None:
                logits_out.append(logits.clone())
            token = _pick(logits, temperature, top_k, top_p, generator)
            new.append(token)
            seq.append(token)
            if on_token is not None:
                on_token(new)
            if len(new) == max_tokens:
                break
            if not use_cache:
                logits = model(torch.tensor([seq[-window:]]))[0, -1]
            elif cache.length < window:
                logits = model(torch.tensor([[token]]), cache)[0, -1]
            else:  # the window is full: keep its last half and rebuild the cache from it
                seq = seq[-(window // 2):]
                cache = KVCache.empty(model)
                logits = model(torch.tensor([seq]), cache)[0, -1]
    return new


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None) -> int:
    import torch

    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        drop = sorted_p.cumsum(0) - sorted_p >= top_p  # keep the smallest set reaching top_p (never empty)
        probs = probs.scatter(0, order[drop], 0.0)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))
