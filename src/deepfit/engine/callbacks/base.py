"""Callback base class and the dispatch list.

Eight events, in this order for one fit::

    on_fit_start
      on_epoch_start
        on_batch_start, on_after_backward, on_batch_end     (each training step)
      on_validation_end                                     (after validation, if any)
      on_epoch_end
    on_fit_end

Each receives the :class:`~deepfit.engine.learner.Learner`. A callback defines only the events
it needs; ``CallbackList`` builds, once, the list of callbacks that override each event, so an
event nobody defines costs nothing per step. Stop training by raising ``CancelFit`` (or
``CancelEpoch`` to end the epoch). Callbacks that carry state across epochs implement
``state_dict``/``load_state_dict`` so that a resumed run continues exactly; a checkpoint keeps
each callback's state under its ``state_key`` (the class name, ``#1``, ``#2``... added for a
second and third callback of one class), so adding or reordering other callbacks does not
hand the state to the wrong one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from deepfit.errors import CallbackError, CancelEpoch, CancelFit, DeepfitError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["Callback", "CallbackList", "EVENTS"]

EVENTS = (
    "on_fit_start",
    "on_epoch_start",
    "on_batch_start",
    "on_after_backward",
    "on_batch_end",
    "on_validation_end",
    "on_epoch_end",
    "on_fit_end",
)


class Callback:
    """Base class of callbacks. ``order`` sorts them (lower runs first)."""

    order = 0

    def on_fit_start(self, learner: Learner) -> None: ...
    def on_epoch_start(self, learner: Learner) -> None: ...
    def on_batch_start(self, learner: Learner) -> None: ...
    def on_after_backward(self, learner: Learner) -> None: ...
    def on_batch_end(self, learner: Learner) -> None: ...
    def on_validation_end(self, learner: Learner) -> None: ...
    def on_epoch_end(self, learner: Learner) -> None: ...
    def on_fit_end(self, learner: Learner) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """State to carry in checkpoints (tensors and plain containers only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    @property
    def state_key(self) -> str:
        """The key of this callback's state in checkpoints (``CallbackList`` numbers repeats).

        The class's qualified name; override it to tell apart two callbacks of one class
        whose order in the list may change (e.g. from the monitored value)."""
        return type(self).__qualname__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CallbackList:
    """Callbacks sorted by ``order``, with per-event dispatch lists built once."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks: list[Callback] = []
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be deepfit Callback instances, got {cb!r}")
            self.callbacks.append(cb)
        self.callbacks.sort(key=lambda cb: cb.order)
        self._by_event = {
            event: [cb for cb in self.callbacks if getattr(type(cb), event) is not getattr(Callback, event)]
            for event in EVENTS
        }

    def has(self, event: str) -> bool:
        return bool(self._by_event[event])

    def __call__(self, event: str, learner: Learner) -> None:
        for cb in self._by_event[event]:
            try:
                getattr(cb, event)(learner)
            except (CancelFit, CancelEpoch, DeepfitError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise CallbackError(
                    f"callback {type(cb).__name__} failed in {event} (epoch {learner.epoch + 1}, step {learner.step}): "
                    f"{type(e).__name__}: {e}"
                ) from e

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def state_keys(self) -> list[str]:
        """Each callback's key in checkpoints: its ``state_key``, with ``#k`` added to the k-th repeat."""
        keys: list[str] = []
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            key = cb.state_key
            k = seen[key] = seen.get(key, -1) + 1
            keys.append(key if k == 0 else f"{key}#{k}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        return {key: cb.state_dict() for key, cb in zip(self.state_keys(), self.callbacks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore each callback whose key is in ``state`` (callbacks the checkpoint lacks keep
        their state). Reads checkpoints written before ``state_key`` too: those keyed each
        callback by position, ``"{index}:{class name}"``."""
        for i, (key, cb) in enumerate(zip(self.state_keys(), self.callbacks)):
            old = f"{i}:{type(cb).__name__}"
            if key in state:
                cb.load_state_dict(state[key])
            elif old in state:
                cb.load_state_dict(state[old])
