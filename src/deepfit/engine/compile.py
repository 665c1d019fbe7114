"""The training step, eager or compiled, and the policy deciding which.

``StepRunner.train_step`` does one micro-batch: forward and loss under autocast, backward
(scaled for fp16), and — on the last micro-batch of an optimizer step — gradient clipping,
the optimizer step and ``zero_grad``. With ``compile`` on, the forward+loss (and with it the
backward graph, through AOTAutograd) is compiled by ``torch.compile``.

What is compiled, and why (measured on the 2-core CPU machines, torch 2.13; the study is
quoted in BENCHMARKS.md): ``torch.compile`` of forward+loss with the fused AdamW kept eager
ran the 784-512-512-10 MLP at 1.30x the plain eager loop, with the shortest compile (~10 s
cold, ~1.5 s with a warm inductor cache). Compiling the optimizer too was slower to compile
(27-36 s cold), no faster on that model, and every ``optimizer.load_state_dict`` into a
compiled optimizer forces a recompile. Fused AdamW alone already gives 1.16-1.39x, so the
break-even of compiling is about 105 s of eager training.

``compile="auto"`` therefore times the first eager steps, projects the remaining eager run
time, and compiles when that exceeds ``CompilePolicy.auto_threshold_s`` (120 s). The decision
is stored in checkpoints, so a resumed run takes the same path (a checkpoint taken while the
first steps are still being timed records no decision; the resumed run times them again).
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from deepfit.engine.callbacks.time_limit import TimeLimit
from deepfit.engine.precision import autocast
from deepfit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["CompilePolicy", "StepRunner"]


@dataclass(frozen=True)
class CompilePolicy:
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


class StepRunner:
    """Runs training steps for a Learner; owns the compiled function when there is one."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.compiled = False
        self.compiled_hint: bool | None = None  # from a checkpoint being resumed
        self._forward_loss = self._eager_forward_loss
        self._probe: list[float] | None = None
        self._remaining = 0

    # -- policy

    def prepare(self, total_steps: int) -> None:
        policy = self.learner.compile_policy
        self._remaining = total_steps
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

    def _enable(self) -> None:
        if self.compiled:
            return
        try:
            self._forward_loss = torch.compile(self._eager_forward_loss, dynamic=False)
            self.compiled = True
        except Exception as e:  # noqa: BLE001 - compile is an optimisation; fall back to eager
            warnings.warn(f"torch.compile is unavailable ({e}); training eagerly", stacklevel=3)

    def _observe(self, seconds: float) -> None:
        probe = self._probe
        assert probe is not None
        probe.append(seconds)
        if len(probe) >= self.learner.compile_policy.probe_steps:
            self._probe = None
            steady = sorted(probe[2:])[len(probe[2:]) // 2]  # median, skipping warm-up steps
            projected = steady * self._remaining * self.learner.accumulate
            # A time budget (TimeLimit callback) caps the run: compiling cannot pay within it.
            budgets = [cb.seconds - cb.elapsed() for cb in self.learner.callbacks if isinstance(cb, TimeLimit)]
            if min([projected, *budgets]) > self.learner.compile_policy.auto_threshold_s:
                self._enable()

    # -- the step

    def _eager_forward_loss(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        learner = self.learner
        with autocast(learner.precision, learner.device):
            output = learner._train_model(*inputs)
            return learner.loss_fn(output, target)

    def train_step(self, batch: tuple[torch.Tensor, ...], *, divisor: int, last_micro: bool) -> torch.Tensor:
        """One micro-batch; ``divisor`` is the number of micro-batches in this optimizer step."""
        learner = self.learner
        t0 = time.perf_counter() if self._probe is not None else 0.0
        *inputs, target = batch
        no_sync = learner.dist.enabled and not last_micro
        with learner._train_model.no_sync() if no_sync else nullcontext():
            loss = self._forward_loss(tuple(inputs), target)
            scaled = loss / divisor if divisor > 1 else loss
            if learner.scaler is not None:
                learner.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if learner.callbacks.has("on_after_backward"):
            learner.callbacks("on_after_backward", learner)
        if last_micro:
            optimizer = learner.optimizer
            if learner.grad_clip is not None:
                if learner.scaler is not None:
                    learner.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(learner.model.parameters(), learner.grad_clip, foreach=True)
            if learner.scaler is not None:
                learner.scaler.step(optimizer)
                learner.scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            self._remaining -= 1
        if self._probe is not None:
            # Timing needs the step finished; on CPU it is, on GPU only when we synchronise.
            if learner.device.type == "cuda":
                torch.cuda.synchronize(learner.device)
            self._observe(time.perf_counter() - t0)
        return loss.detach()
