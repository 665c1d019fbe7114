"""The Learner: trains any ``nn.Module`` on any data, with one loop you can read top to bottom.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from deepfit import Learner
    >>> X = torch.randn(256, 4); y = (X[:, 0] > 0).long()
    >>> learn = Learner(nn.Linear(4, 2), (X, y), metrics=["accuracy"], lr=0.05, progress=False)
    >>> history = learn.fit(3)
    >>> history[-1]["train_loss"] < 0.69
    True

Design (see ARCHITECTURE.md, "Engine rules"):

* No host sync per step. The running loss stays on the device and is read every
  ``sync_every`` seconds (0.5 s) and at epoch end; that read also catches a NaN/inf loss.
* In-memory data is batched by index slicing on the device (``deepfit.data.loader``).
* Callbacks that do not define an event are never called.
* A time budget (``budget=``, a :class:`~deepfit.engine.budget.Budget`) is checked after every
  batch with one clock read; the fit ends after the batch that spends it.
* Exact resume: the sample order is a function of (seed, epoch); checkpoints carry model,
  optimizer, scaler, RNG states, position, history and callback state.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepfit._version import __version__
from deepfit.data.loader import BatchLoader, TensorBatches, make_loader
from deepfit.engine import distributed
from deepfit.engine.budget import Budget
from deepfit.engine.callbacks import Callback, CallbackList, ModelCheckpoint, ProgressBar, ProgressLog
from deepfit.engine.checkpoint import load_checkpoint, save_checkpoint
from deepfit.engine.compile import CompilePolicy, StepCompiler
from deepfit.engine.losses import get_loss, infer_loss
from deepfit.engine.optim import build_optimizer
from deepfit.engine.precision import autocast, make_scaler, resolve_precision
from deepfit.engine.rng import get_rng_state, seed_everything, set_rng_state
from deepfit.engine.schedules import OneCycle, Schedule, get_schedule
from deepfit.errors import CancelEpoch, CancelFit, CheckpointError, ConfigError, DataError, NonFiniteLossError
from deepfit.metrics import Metric, get_metric

__all__ = ["Learner", "LRFinderResult"]

CHECKPOINT_VERSION = 2


def _checkpoint_v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """Version 2 (2026-12) stores every rank's RNG state (``rng_ranks``): version 1 stored rank 0's
    only, so a resumed multi-process run gave every rank rank 0's dropout and augmentation
    draws. A version-1 checkpoint resumes as it always did (each rank takes rank 0's state);
    the keys added to version 1 over time without a version get their old meaning."""
    state.setdefault("epoch_time", 0.0)
    state.setdefault("compiled", None)
    state.setdefault("budget", None)
    state["rng_ranks"] = None
    return state


# checkpoint version -> the function that turns such a checkpoint into the next version.
CHECKPOINT_MIGRATIONS = {1: _checkpoint_v1_to_v2}


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from e


def _configure_threads(threads: int | str, num_workers: int, local_world: int) -> None:
    """Never oversubscribe the cores: torch threads + loader workers + local ranks <= cores."""
    if isinstance(threads, int):
        if threads < 1:
            raise ConfigError(f"threads must be >= 1 or 'auto', got {threads}")
        torch.set_num_threads(threads)
        return
    if threads != "auto":
        raise ConfigError(f"threads must be an int or 'auto', got {threads!r}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    budget = max(1, cores // max(local_world, 1) - num_workers)
    if torch.get_num_threads() > budget:  # only ever lower what the user or torch chose
        torch.set_num_threads(budget)


class Learner:
    """Trains ``model`` on ``train`` data and evaluates on ``valid`` data.

    Args:
        model: any ``nn.Module``; it is called as ``model(*inputs)``.
        train: training data: a tuple of arrays/tensors ``(inputs..., target)``, a map-style
            ``Dataset`` whose items are such tuples, or a ``DataLoader``.
        valid: validation data in the same forms (optional).
        loss: ``"auto"`` (cross-entropy for integer targets, MSE for float), a name, or a
            callable ``loss(output, target)``.
        metrics: names (``"accuracy"``, ``"f1"``, ``"auroc"``, ``"rmse"``, ...) or Metric objects,
            computed on validation data each epoch.
        optimizer: ``"adamw"`` (default; no decay on biases and norms), ``"adam"``, ``"sgd"``,
            ``"rmsprop"``, an optimizer instance, or a callable ``f(param_groups)``.
        lr: learning rate (peak learning rate for one-cycle and cosine schedules).
        weight_decay: decoupled weight decay.
        batch_size: samples per step on each process.
        label_smoothing: for cross-entropy.
        grad_clip: clip the global gradient norm to this value.
        accumulate: micro-batches per optimizer step (gradient accumulation).
        precision: ``"auto"``, ``"32"``, ``"bf16"`` or ``"fp16"`` (autocast + grad scaling).
        compile: ``"auto"`` (compile the step when the run is long enough to repay it), True, False.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seed: seeds every RNG at the first fit and fixes the sample order.
        callbacks: extra :class:`Callback` objects.
        budget: a time budget: seconds or a :class:`~deepfit.engine.budget.Budget`. Each fit
            ends after the batch that spends it (and under ``torchrun`` all ranks end after the
            same batch); a resumed fit gets what its checkpoint had left. Also read by
            ``compile="auto"`` (compiling cannot pay within a short budget) and the progress lines.
        progress: show progress (a live bar on a terminal, one line per epoch otherwise).
        progress_label: put before every progress line, e.g. ``"model 2/4"`` when this fit is
            one of several (a bag of models); ``""``: none.
        out_dir: run directory; when set, ``last.ckpt`` (each epoch and every
            ``checkpoint_every`` steps) and ``best.ckpt`` are written there.
        checkpoint_every: steps between mid-epoch checkpoints (needs ``out_dir``).
        num_workers: loader worker processes for ``Dataset`` inputs.
        threads: torch threads: an int, or ``"auto"`` (lowered to avoid oversubscription).
    """

    sync_every = 0.5  # seconds between reads of the running loss (and NaN checks)

    def __init__(
        self,
        model: nn.Module,
        train: Any = None,
        valid: Any = None,
        *,
        loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "auto",
        metrics: Iterable[str | Metric] = (),
        optimizer: str | torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        batch_size: int = 64,
        valid_batch_size: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        label_smoothing: float = 0.0,
        grad_clip: float | None = None,
        accumulate: int = 1,
        precision: str = "auto",
        compile: bool | str = "auto",
        device: str | torch.device = "auto",
        seed: int = 0,
        callbacks: Iterable[Callback] = (),
        budget: Budget | float | None = None,
        progress: bool = True,
        progress_label: str = "",
        out_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        num_workers: int = 0,
        threads: int | str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if accumulate < 1:
            raise ConfigError(f"accumulate must be >= 1, got {accumulate}")
        if grad_clip is not None and grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0, got {grad_clip}")
        if checkpoint_every is not None and out_dir is None:
            raise ConfigError("checkpoint_every needs out_dir (where to write the checkpoints)")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.device = _resolve_device(device)
        self.dist = distributed.setup(self.device)
        # Workers of a loader passed in (DataLoader, image batches) use cores too.
        loader_workers = max(num_workers, int(getattr(train, "num_workers", 0) or 0))
        _configure_threads(threads, loader_workers, self.dist.local_world_size)
        self.model = model.to(self.device)
        self.train_data, self.valid_data = train, valid
        self.loss_name = loss
        self.label_smoothing = label_smoothing
        self.loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = (
            None if loss == "auto" else get_loss(loss, label_smoothing=label_smoothing)
        )
        self.metrics = [get_metric(m) for m in metrics]
        self.lr = lr
        self.optimizer = build_optimizer(optimizer, self.model, lr=lr, weight_decay=weight_decay)
        self.batch_size = batch_size
        self.valid_batch_size = valid_batch_size or 2 * batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.grad_clip, self.accumulate = grad_clip, accumulate
        self.precision = resolve_precision(precision, self.device)
        self.scaler = make_scaler(self.precision, self.device)
        self.compile_policy = CompilePolicy.parse(compile)
        self.seed = seed
        self.num_workers = num_workers
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress_label = progress_label
        builtin: list[Callback] = []
        if progress:
            builtin.append(ProgressBar() if sys.stdout.isatty() else ProgressLog())
        if self.out_dir is not None:
            builtin.append(ModelCheckpoint(self.out_dir, every_n_steps=checkpoint_every))
        self.callbacks = CallbackList([*builtin, *callbacks])
        self.budget: Budget | None = _as_budget(budget)  # a TimeLimit callback sets it at fit start
        self._train_model: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._train_model = DistributedDataParallel(self.model, device_ids=ids)
        self._compiler = StepCompiler(self._forward_loss)
        self._seeded = False
        # Run state, read by callbacks.
        self.epoch = 0
        self.epochs = 0
        self.step = 0
        self.batch_index = 0
        self.num_batches = 0
        self.stepped = False
        self.loss: torch.Tensor | None = None
        self.running_loss: float | None = None
        self.history: list[dict[str, Any]] = []
        self.schedule: Schedule | None = None
        self.total_steps = 0

    # ------------------------------------------------------------------ public API

    @property
    def is_main(self) -> bool:
        """True on the process that prints and writes files (rank 0)."""
        return self.dist.is_main

    @property
    def compiled(self) -> bool:
        """True when the training step runs compiled (``compile=True``, or chosen by ``"auto"``)."""
        return self._compiler.compiled

    def fit(
        self,
        epochs: int,
        lr: float | None = None,
        *,
        schedule: str | Schedule | None = "constant",
        resume: str | os.PathLike | None = None,
    ) -> list[dict[str, Any]]:
        """Train for ``epochs`` epochs; returns the history (one dict per epoch).

        Args:
            epochs: number of passes over the training data.
            lr: learning rate (default: the Learner's ``lr``).
            schedule: ``"constant"``, ``"one_cycle"``, ``"cosine"`` (warm-up + cosine) or a Schedule.
            resume: a checkpoint written by this run's ``out_dir``; training continues from it
                exactly (same weights as an uninterrupted run).
        """
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        return self._fit(epochs, get_schedule(schedule, lr or self.lr), resume)

    def fit_one_cycle(
        self,
        epochs: int,
        lr_max: float | None = None,
        *,
        pct_start: float = 0.25,
        div: float = 25.0,
        final_div: float = 1e4,
        resume: str | os.PathLike | None = None,
    ) -> list[dict[str, Any]]:
        """Train with the 1cycle policy (warm-up to ``lr_max``, then anneal), as in fastai."""
        return self.fit(
            epochs,
            schedule=OneCycle(lr_max or self.lr, pct_start=pct_start, div=div, final_div=final_div),
            resume=resume,
        )

    def validate(self, data: Any = None) -> dict[str, float]:
        """Loss and metrics on ``data`` (default: the validation data)."""
        data = self.valid_data if data is None else data
        if data is None:
            raise ConfigError("validate() needs data: pass it, or give the Learner valid data")
        loader = self._eval_loader(data, shard=True)
        self._ensure_loss(loader)
        return self._evaluate(loader)

    def predict(self, data: Any = None, *, has_target: bool | None = None) -> torch.Tensor:
        """Model outputs for every row of ``data``, concatenated, on the CPU.

        Args:
            data: inputs: an array/tensor, a tuple of them, a Dataset or a DataLoader.
                Default: the validation data.
            has_target: whether the last element of each batch is a target to drop; default
                True for the validation data, Datasets and DataLoaders, False for arrays.
        """
        if data is None:
            data, has_target = self.valid_data, True if has_target is None else has_target
            if data is None:
                raise ConfigError("predict() needs data: pass it, or give the Learner valid data")
        if has_target is None:
            has_target = not isinstance(data, (torch.Tensor, tuple, list)) and not hasattr(data, "__array__")
        loader = self._eval_loader(data, shard=False)
        outputs = []
        self.model.eval()
        with torch.inference_mode(), autocast(self.precision, self.device):
            for batch in loader.iterate(0):
                inputs = batch[:-1] if has_target else batch
                outputs.append(self.model(*inputs).float().cpu())
        return torch.cat(outputs) if outputs else torch.empty(0)

    def lr_find(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_it: int = 100,
    ) -> LRFinderResult:
        """Sweep the learning rate exponentially and suggest one (the model is left unchanged).

        Returns an :class:`LRFinderResult` with the curve, ``suggestion`` (fastai's "valley"
        rule), ``lr_min`` (a tenth of the LR at the lowest loss) and ``plot(path)``.
        """
        if not 0 < start_lr < end_lr:
            raise ConfigError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
        loader = self._train_loader()
        self._ensure_loss(loader)
        model_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        optim_state = _clone_state(self.optimizer.state_dict())
        rng = get_rng_state()
        lrs, losses = [], []
        smooth, best, beta = 0.0, math.inf, 0.98
        try:
            self._train_model.train()
            it, epoch = loader.iterate(0), 0
            for i in range(num_it):
                lr = start_lr * (end_lr / start_lr) ** (i / max(num_it - 1, 1))
                self._set_lr(lr)
                try:
                    batch = next(it)
                except StopIteration:
                    epoch += 1
                    it = loader.iterate(epoch)
                    batch = next(it)
                loss = float(self._train_step(batch, divisor=1, last_micro=True))  # sync is fine here
                smooth = beta * smooth + (1 - beta) * loss
                value = smooth / (1 - beta ** (i + 1))
                lrs.append(lr)
                losses.append(value)
                best = min(best, value)
                if not math.isfinite(value) or value > 4 * best:
                    break
        finally:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optim_state)
            set_rng_state(rng)
            self._set_lr(self.lr)
        return LRFinderResult(lrs, losses)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write the full run state atomically (rank 0 writes; every rank's RNG state goes in it).
        Refuses NaN/inf weights or loss."""
        self._sync_loss(where="before writing a checkpoint")
        rng_ranks = [get_rng_state()]
        if self.dist.enabled:  # the ranks draw different dropout masks and augmentations
            import torch.distributed as dist

            rng_ranks = [None] * self.dist.world_size
            dist.all_gather_object(rng_ranks, get_rng_state())
        if not self.is_main:
            return
        bad = [name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(
                f"parameters {', '.join(bad[:3])} hold NaN/inf at epoch {self.epoch + 1}, step {self.step}; "
                f"{path} was not overwritten. Lower the learning rate or set grad_clip."
            )
        state = {
            "format": "deepfit-checkpoint",
            "version": CHECKPOINT_VERSION,
            "deepfit": __version__,
            "torch": str(torch.__version__),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self._position[0],
            "batch": self._position[1],
            "step": self.step,
            "epochs": self.epochs,
            "schedule": self.schedule.to_dict() if self.schedule else None,
            "accumulate": self.accumulate,
            "batch_size": self.batch_size,
            "world_size": self.dist.world_size,
            "seed": self.seed,
            "loss_sum": self._loss_sum,
            "loss_count": self._loss_count,
            "epoch_time": self._epoch_time(),
            "history": self.history,
            "callbacks": self.callbacks.state_dict(),
            "budget": self.budget.state_dict() if self.budget is not None else None,
            "compiled": self._compiler.decision,
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
        }
        save_checkpoint(state, path)

    # ------------------------------------------------------------------ the loop

    def _fit(self, epochs: int, schedule: Schedule, resume: str | os.PathLike | None) -> list[dict[str, Any]]:
        loader = self._train_loader()
        valid_loader = self._eval_loader(self.valid_data, shard=True) if self.valid_data is not None else None
        self._ensure_loss(loader)
        self.epochs, self.schedule = epochs, schedule
        self.num_batches = loader.num_batches()
        if self.num_batches == 0:
            raise DataError(
                f"no training batches: {loader.num_samples()} samples with batch_size={self.batch_size}"
                f"{' and drop_last=True' if self.drop_last else ''}"
            )
        steps_per_epoch = math.ceil(self.num_batches / self.accumulate)
        self.total_steps = epochs * steps_per_epoch
        self.step, self.history = 0, []
        start_epoch, start_batch = 0, 0
        self._loss_sum, self._loss_count = torch.zeros((), device=self.device), 0
        self._time_before = 0.0
        if resume is not None:
            start_epoch, start_batch = self._restore(resume, epochs, schedule)
        elif not self._seeded:
            seed_everything(self.seed)
        self._seeded = True
        self._compiler.prepare(
            self.compile_policy, total_steps=self.total_steps - self.step, accumulate=self.accumulate
        )
        self._position = (start_epoch, start_batch)
        self.callbacks("on_fit_start", self)
        if self.budget is not None:
            self.budget.start(distributed=self.dist.enabled)
        try:
            for epoch in range(start_epoch, epochs):
                self.epoch = epoch
                first = start_batch if epoch == start_epoch else 0
                if first == 0:
                    self._loss_sum, self._loss_count, self._time_before = torch.zeros((), device=self.device), 0, 0.0
                self._epoch_t0 = time.perf_counter()
                self.callbacks("on_epoch_start", self)
                try:
                    self._train_epoch(loader, epoch, first)
                except CancelEpoch:
                    pass
                row = {"epoch": epoch + 1, "train_loss": self._sync_loss(where=f"at the end of epoch {epoch + 1}", reduce=True)}
                if valid_loader is not None:
                    row.update({f"valid_{k}": v for k, v in self._evaluate(valid_loader).items()})
                    self.callbacks("on_validation_end", self)
                row["lr"] = self._current_lr()
                row["time"] = self._epoch_time()
                self.history.append(row)
                self._position = (epoch + 1, 0)
                self.callbacks("on_epoch_end", self)
        except CancelFit:
            pass
        self.callbacks("on_fit_end", self)
        if self.dist.enabled:  # every replica ends as the model rank 0 saves
            distributed.buffers_from_rank_0(self.model)
        return self.history

    def _train_epoch(self, loader: BatchLoader, epoch: int, first: int) -> None:
        self._train_model.train()
        next_sync = time.monotonic() + self.sync_every
        cbs, budget = self.callbacks, self.budget
        for i, batch in enumerate(loader.iterate(epoch, first), start=first):
            self.batch_index = i
            micro = i % self.accumulate
            # The final group of an epoch may hold fewer micro-batches than `accumulate`.
            group = min(self.accumulate, self.num_batches - (i - micro))
            last_micro = micro == group - 1
            if micro == 0:
                self._apply_schedule()
            cbs("on_batch_start", self)
            self.loss = self._train_step(batch, divisor=group, last_micro=last_micro)
            self._loss_sum += self.loss.detach()  # stays on the device: no sync
            self._loss_count += 1
            self.stepped = last_micro
            if last_micro:
                self.step += 1
            self._position = (epoch, i + 1)
            cbs("on_batch_end", self)
            if budget is not None and budget.tick():
                raise CancelFit(f"time budget of {budget.seconds:g}s spent")
            now = time.monotonic()
            if now >= next_sync:
                self._sync_loss(where=f"in epoch {epoch + 1}")
                next_sync = now + self.sync_every

    def _train_step(self, batch: tuple[torch.Tensor, ...], *, divisor: int, last_micro: bool) -> torch.Tensor:
        """One micro-batch; ``divisor`` is the number of micro-batches in this optimizer step.

        Forward and loss under autocast (compiled, when :class:`StepCompiler` chose it), backward
        (scaled for fp16; under DDP the gradient all-reduce waits for the last micro-batch), and
        on the last micro-batch: gradient clipping, the optimizer step and ``zero_grad``.
        """
        timing = self._compiler.timing  # compile="auto" is timing the first steps
        t0 = time.perf_counter() if timing else 0.0
        *inputs, target = batch
        no_sync = self.dist.enabled and not last_micro
        with self._train_model.no_sync() if no_sync else nullcontext():
            loss = self._compiler.forward_loss(tuple(inputs), target)
            scaled = loss / divisor if divisor > 1 else loss
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if self.callbacks.has("on_after_backward"):
            self.callbacks("on_after_backward", self)
        if last_micro:
            if self.grad_clip is not None:
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip, foreach=True)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if timing:
            # Timing needs the step finished; on CPU it is, on GPU only when we synchronise.
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            left = self.budget.seconds_left() if self.budget is not None else None
            self._compiler.observe(time.perf_counter() - t0, stepped=last_micro, budget_left=left)
        return loss.detach()

    def _forward_loss(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        """The eager forward pass and loss (what ``torch.compile`` compiles)."""
        with autocast(self.precision, self.device):
            output = self._train_model(*inputs)
            return self.loss_fn(output, target)

    def _evaluate(self, loader: BatchLoader) -> dict[str, float]:
        self.model.eval()
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        for m in self.metrics:
            m.reset()
        with torch.inference_mode(), autocast(self.precision, self.device):
            for batch in loader.iterate(0):
                *inputs, target = batch
                output = self.model(*inputs)
                n = len(target)
                total += self.loss_fn(output, target).double() * n
                count += n
                for m in self.metrics:
                    m.update(output, target)
        if self.dist.enabled:
            torch.distributed.all_reduce(total)
            torch.distributed.all_reduce(count)
        result = {"loss": float(total / count.clamp(min=1))}
        for m in self.metrics:
            m.sync()
            result[m.name] = m.compute()
        self._train_model.train()
        return result

    # ------------------------------------------------------------------ helpers

    def _sync_loss(self, *, where: str, reduce: bool = False) -> float | None:
        """Read the running loss from the device (one sync) and stop on NaN/inf.

        With ``reduce`` (at epoch ends only: every rank gets there together) the mean is taken
        over all ranks; mid-epoch reads are local, as a collective there could deadlock.
        """
        if self._loss_count == 0:
            return self.running_loss
        if reduce and self.dist.enabled:
            mean = self._loss_sum / self._loss_count
            torch.distributed.all_reduce(mean)
            value = float(mean) / self.dist.world_size
        else:
            value = float(self._loss_sum) / self._loss_count
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"training loss became {value} {where} (epoch {self.epoch + 1}, by step {self.step}); "
                "training stopped and no checkpoint was written with these weights. "
                "Lower the learning rate, set grad_clip=1.0, or check the inputs for NaN/inf."
            )
        self.running_loss = value
        return value

    def _epoch_time(self) -> float:
        return self._time_before + (time.perf_counter() - self._epoch_t0) if hasattr(self, "_epoch_t0") else 0.0

    def _apply_schedule(self) -> None:
        assert self.schedule is not None
        lr = self.schedule.lr(self.step, self.total_steps)
        beta1 = self.schedule.beta1(self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            _set_group(group, "lr", lr * group.get("lr_scale", 1.0))
            if beta1 is not None:
                if "betas" in group:
                    group["betas"] = (beta1, group["betas"][1])
                elif "momentum" in group and group["momentum"]:
                    group["momentum"] = beta1

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            _set_group(group, "lr", lr * group.get("lr_scale", 1.0))

    def _current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _train_loader(self) -> BatchLoader:
        if self.train_data is None:
            raise ConfigError("no training data: pass it as Learner(model, train=...)")
        return make_loader(
            self.train_data,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            seed=self.seed,
            device=self.device,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_workers=self.num_workers,
            name="train",
        )

    def _eval_loader(self, data: Any, *, shard: bool) -> BatchLoader:
        loader = make_loader(
            data,
            batch_size=self.valid_batch_size,
            shuffle=False,
            device=self.device,
            num_workers=self.num_workers,
            name="valid",
        )
        if shard and self.dist.enabled and isinstance(loader, TensorBatches):
            # Each rank evaluates a contiguous share of the rows; sums are reduced afterwards.
            n, w, r = loader.n, self.dist.world_size, self.dist.rank
            lo, hi = n * r // w, n * (r + 1) // w
            loader = TensorBatches(
                [t[lo:hi] for t in loader.tensors], batch_size=self.valid_batch_size, shuffle=False
            )
        return loader

    def _ensure_loss(self, loader: BatchLoader) -> None:
        if self.loss_fn is not None:
            return
        first = next(iter(loader.iterate(0)))
        name = infer_loss(first[-1])
        self.loss_fn = get_loss(name, label_smoothing=self.label_smoothing)
        self.loss_name = name

    def _restore(self, path: str | os.PathLike, epochs: int, schedule: Schedule) -> tuple[int, int]:
        state = load_checkpoint(path, map_location=self.device)
        version = state.get("version")
        if not isinstance(version, int) or not 1 <= version <= CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} has checkpoint version {version!r}; this deepfit ({__version__}) reads "
                                  f"versions 1..{CHECKPOINT_VERSION}. Upgrade deepfit to resume it")
        while version < CHECKPOINT_VERSION:
            state = CHECKPOINT_MIGRATIONS[version](state)
            version += 1
        expected = {
            "epochs": epochs,
            "schedule": schedule.to_dict(),
            "accumulate": self.accumulate,
            "batch_size": self.batch_size,
            "world_size": self.dist.world_size,
            "seed": self.seed,
        }
        for key, value in expected.items():
            if state.get(key) != value:
                raise CheckpointError(
                    f"{path} was written by a run with {key}={state.get(key)!r}, but this run has {key}={value!r}; "
                    "resume with the same settings, or start a new run"
                )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} does not fit this model/optimizer: {e}") from e
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        self.history = list(state["history"])
        self._loss_sum = state["loss_sum"].to(self.device)
        self._loss_count = state["loss_count"]
        self._time_before = state["epoch_time"]
        self.callbacks.load_state_dict(state["callbacks"])
        if self.budget is not None and state["budget"] is not None:
            self.budget.load_state_dict(state["budget"])
        self._compiler.compiled_hint = state["compiled"]
        ranks = state["rng_ranks"]
        set_rng_state(ranks[self.dist.rank] if ranks else state["rng"])
        return state["epoch"], state["batch"]


def _as_budget(budget: Budget | float | None) -> Budget | None:
    if budget is None or isinstance(budget, Budget):
        return budget
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        return Budget(budget)
    raise ConfigError(f"budget must be seconds (a number) or a Budget, got {budget!r}")


def _set_group(group: dict, key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):
        current.fill_(value)  # compiled optimizers keep lr as a tensor (no recompiles)
    else:
        group[key] = value


def _clone_state(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone_state(v) for v in obj]
    return obj


@dataclass
class LRFinderResult:
    """The learning-rate sweep: ``lrs``, smoothed ``losses``, and the suggestions."""

    lrs: list[float]
    losses: list[float]
    suggestion: float = field(init=False)
    lr_min: float = field(init=False)

    def __post_init__(self) -> None:
        finite = [(lr, loss) for lr, loss in zip(self.lrs, self.losses) if math.isfinite(loss)]
        if len(finite) < 3:
            raise DataError("lr_find stopped before it had 3 finite losses; lower start_lr")
        lrs = [lr for lr, _ in finite]
        losses = [loss for _, loss in finite]
        i_min = min(range(len(losses)), key=losses.__getitem__)
        self.lr_min = lrs[i_min] / 10
        # fastai's "valley": the longest run of decreasing losses; suggest a point two thirds
        # of the way down it — robust to the noisy first steps that fool "steepest slope".
        n = len(losses)
        run = [1] * n
        best_end, best_start = 0, 0
        for i in range(1, n):
            for j in range(i):
                if losses[i] < losses[j] and run[i] < run[j] + 1:
                    run[i] = run[j] + 1
            if run[i] > run[best_end]:
                best_end, best_start = i, i - run[i]
        third = (best_end - best_start) / 3
        self.suggestion = lrs[min(n - 1, max(0, best_start + int(third) + int(third / 2)))]

    def plot(self, path: str | os.PathLike) -> Path:
        """Save the loss-vs-learning-rate curve as an image (needs matplotlib: ``deepfit[report]``)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ConfigError("plotting needs matplotlib: pip install 'deepfit[report]'") from e
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggestion {self.suggestion:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        plt.close(fig)
        return path

