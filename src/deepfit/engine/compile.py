"""Whether to compile the training step, and the compiled function when it is.

The step itself (forward and loss, backward, clipping, the optimizer step) is
``Learner._train_step`` in ``engine/learner.py``. Here: :class:`CompilePolicy` (the ``compile=``
argument) and :class:`StepCompiler`, which applies it and, once compiling is chosen, holds the
forward+loss compiled by ``torch.compile`` (and with it the backward graph, through AOTAutograd),
which the step then calls instead of the eager one.

What is compiled, and why (measured on the 2-core CPU machines, torch 2.13; the study is
quoted in BENCHMARKS.md): ``torch.compile`` of forward+loss with the fused AdamW kept eager
ran the 784-512-512-10 MLP at 1.30x the plain eager loop, with the shortest compile (~10 s
cold, ~1.5 s with a warm inductor cache). Compiling the optimizer too was slower to compile
(27-36 s cold), no faster on that model, and every ``optimizer.load_state_dict`` into a
compiled optimizer forces a recompile. Fused AdamW alone already gives 1.16-1.39x, so the
break-even of compiling is about 105 s of eager training.

``compile="auto"`` therefore times the first eager steps, projects the remaining eager run
time, and compiles when that exceeds ``CompilePolicy.auto_threshold_s`` (120 s) — and the
time budget left, when the run has one (compiling cannot pay within a short budget). The
decision is stored in checkpoints, so a resumed run takes the same path (a checkpoint taken
while the first steps are still being timed records no decision; the resumed run times them
again).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepfit.errors import ConfigError

__all__ = ["CompilePolicy", "StepCompiler"]


@dataclass(frozen=True)
class CompilePolicy:
    """The ``compile=`` argument: ``"on"``, ``"off"``, or ``"auto"`` (time ``probe_steps`` eager
    steps, compile when the projected eager run exceeds ``auto_threshold_s`` seconds)."""

    mode: str  # "auto", "on" or "off"
    auto_threshold_s: float = 120.0
    probe_steps: int = 20

    @classmethod
    def parse(cls, value: bool | str) -> CompilePolicy:
        if value is True or value in ("on", "true", "True"):
            return cls("on")
        if value is False or value in ("off", "false", "False"):
            return cls("off")
        if value == "auto":
            return cls("auto")
        raise ConfigError(f"compile must be True, False or 'auto', got {value!r}")


class StepCompiler:
    """Applies a :class:`CompilePolicy` to a learner's forward+loss.

    The training step calls :attr:`forward_loss` (eager until compiling is chosen); while
    ``compile="auto"`` is timing the first steps (:attr:`timing`), the step reports each
    micro-batch's duration to :meth:`observe`.

    Args:
        forward_loss: the eager ``f(inputs, target) -> loss``.
    """

    def __init__(self, forward_loss: Callable[[tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]) -> None:
        self._eager = forward_loss
        self.forward_loss = forward_loss
        self.compiled = False
        self.compiled_hint: bool | None = None  # from a checkpoint being resumed
        self._policy = CompilePolicy("off")
        self._probe: list[float] | None = None
        self._remaining = 0  # optimizer steps left in the fit
        self._accumulate = 1

    def prepare(self, policy: CompilePolicy, *, total_steps: int, accumulate: int = 1) -> None:
        """At fit start: compile now, keep eager, or (``"auto"``) start timing steps."""
        self._policy = policy
        self._remaining = total_steps
        self._accumulate = accumulate
        if self.compiled_hint is not None and policy.mode == "auto":
            want = self.compiled_hint
        else:
            want = policy.mode == "on"
        if want:
            self._enable()
        elif policy.mode == "auto" and self.compiled_hint is None:
            self._probe = []

    @property
    def decision(self) -> bool | None:
        """True/False once decided; None while ``compile="auto"`` is still timing steps."""
        return None if self._probe is not None else self.compiled

    @property
    def timing(self) -> bool:
        """True while ``compile="auto"`` times steps: the step must then call :meth:`observe`."""
        return self._probe is not None

    def observe(self, seconds: float, *, stepped: bool, budget_left: float | None = None) -> None:
        """One micro-batch took ``seconds`` (``stepped``: it ended an optimizer step). After
        ``probe_steps`` of them, compile if the projected eager time left — capped by the
        ``budget_left`` seconds of a time budget — exceeds the threshold."""
        probe = self._probe
        assert probe is not None
        if stepped:
            self._remaining -= 1
        probe.append(seconds)
        if len(probe) >= self._policy.probe_steps:
            self._probe = None
            steady = sorted(probe[2:])[len(probe[2:]) // 2]  # median, skipping warm-up steps
            projected = steady * self._remaining * self._accumulate
            if min(projected, math.inf if budget_left is None else budget_left) > self._policy.auto_threshold_s:
                self._enable()

    def _enable(self) -> None:
        if self.compiled:
            return
        try:
            self.forward_loss = torch.compile(self._eager, dynamic=False)
            self.compiled = True
        except Exception as e:  # noqa: BLE001 - compile is an optimisation; fall back to eager
            warnings.warn(f"torch.compile is unavailable ({e}); training eagerly", stacklevel=3)
