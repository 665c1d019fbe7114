"""Mixed precision: choose the autocast dtype and make the gradient scaler."""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from deepfit.errors import ConfigError

__all__ = ["resolve_precision", "autocast", "make_scaler", "cpu_has_fast_bf16"]

PRECISIONS = ("auto", "32", "bf16", "fp16")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AVX512-BF16 or AMX): only then is bf16 faster."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` → bf16 on CUDA with bf16 support, and on CPUs with native bf16; else 32."""
    p = str(precision).lower().replace("fp32", "32").replace("float32", "32").replace("bfloat16", "bf16")
    if p not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if p != "auto":
        if p == "fp16" and device.type == "cpu":
            raise ConfigError("precision='fp16' needs a GPU; on CPU use 'bf16' or '32'")
        return p
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # On CPUs without native bf16 the conversion costs more than it saves; and bf16 changes
    # accuracy, so it is only the default where it clearly pays.
    return "32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (a no-op context for "32")."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (bf16 and fp32 need none)."""
    if precision == "fp16":
        return torch.amp.GradScaler(device.type)
    return None
