"""Task settings: frozen dataclasses with a version, strict JSON, and named migrations.

Every task's settings class derives from :class:`TaskSettings`. What a run stores in
``run.json`` is ``to_json()``; ``from_json`` reads it back for ``--resume``:

- settings are **grouped**: each class's ``GROUPS`` puts every field in exactly one of the
  groups of :data:`GROUP_DOCS` (data, split, schedule, optimizer, model, text, augment, run),
  the same group and the same name for the same idea in every task. ``to_json()`` writes
  ``{"version": V, "data": {...}, "split": {...}, ...}``; in Python the fields stay flat
  (``TableSettings(target="y", lr=1e-3)``, ``settings.lr``), as Keras and fastai take them —
  one name per idea makes a flat name unambiguous. docs/settings.md lists them all by group
  (a test keeps it equal to the classes);

- the stored ``version`` (absent = 1, the layout before versions existed) is brought up to
  the class's ``VERSION`` by the functions in its ``MIGRATIONS`` index, one named, documented
  function per format change (Lightning's ``utilities/migration`` pattern), each tested on a
  fixture written by the code of its time (``tests/compat/``);
- a key the class does not know is an error naming the key, never dropped in silence;
- a ``version`` newer than this deepfit knows is an error saying to upgrade.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo(TaskSettings):
    ...     VERSION = 2
    ...     MIGRATIONS = {1: lambda d: {**d, "depth": 1}}
    ...     seed: int = 0
    ...     depth: int = 3
    >>> Demo.from_json({"seed": 4}).depth      # a version-1 file: migrated
    1
    >>> Demo.from_json({"version": 2, "seed": 4}).depth
    3
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Self

from deepfit.errors import ConfigError

__all__ = ["TaskSettings", "GROUP_DOCS", "migrate", "explicit_fields", "rename_key", "nest"]

# The settings groups shared by every task, in the order run.json and docs/settings.md show them.
GROUP_DOCS: dict[str, str] = {
    "data": "what the data is: the target, the task, column roles and types",
    "split": "how rows are held out for testing and validation",
    "schedule": "how long training runs: time budget, epochs or steps, early stopping, LR schedule, ensembles",
    "optimizer": "batch size, learning rate, weight decay and other optimizer and loss settings",
    "model": "the network: its kind, size and parts",
    "text": "how text columns are modelled inside a table",
    "augment": "training-time augmentation and test-time augmentation",
    "run": "seed, checkpoints and resources: what makes a run reproducible and how it uses the machine",
}


def migrate(d: dict[str, Any], *, version: int, current: int,
            migrations: dict[int, Callable[[dict[str, Any]], dict[str, Any]]], what: str) -> dict[str, Any]:
    """Apply ``migrations[v]`` (which turns version ``v`` into ``v + 1``) from ``version`` up to ``current``.

    Raises a :class:`~deepfit.errors.ConfigError` for a version newer than ``current`` or with no path.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{what}: version must be a positive integer, got {version!r}")
    if version > current:
        raise ConfigError(f"{what} has version {version}, newer than this deepfit reads ({current}); "
                          "upgrade deepfit to use it")
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise ConfigError(f"{what}: no migration from version {version} to {version + 1}")
        d = step(dict(d))
        version += 1
    return d


def rename_key(d: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``d`` with key ``old`` renamed to ``new`` (a migration step when a setting changes name)."""
    if old in d:
        d[new] = d.pop(old)
    return d


def nest(d: dict[str, Any], groups: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """A flat settings dict grouped by ``groups`` (a migration step: flat → grouped layout).

    Keys in no group stay at the top level, where ``from_json`` names them as unknown.
    """
    out: dict[str, Any] = {}
    where = {name: group for group, names in groups.items() for name in names}
    for key, value in d.items():
        if key in where:
            out.setdefault(where[key], {})[key] = value
        else:
            out[key] = value
    return out


def explicit_fields(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass whose value differs from the class default (what was chosen)."""
    chosen = {}
    for f in dataclasses.fields(settings):
        if f.name == "version":
            continue
        value = getattr(settings, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        if value != default and value not in ("", None):
            chosen[f.name] = value
    return chosen


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """Base of every task's settings: versioned, strict ``to_json`` / ``from_json``.

    Subclasses set ``VERSION`` (bump it with each change of meaning or name, and add a function
    to ``MIGRATIONS`` keyed by the old version), ``GROUPS`` (group name → its fields; every
    field in exactly one group of :data:`GROUP_DOCS`), and may override ``_decode`` to turn
    JSON lists back into tuples.
    """

    VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}
    GROUPS: ClassVar[dict[str, tuple[str, ...]]] = {}

    def flat_json(self) -> dict[str, Any]:
        """Every field as JSON, ungrouped (``to_json`` without the groups and the version)."""
        d = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            d[f.name] = list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, dict) else value)
        return d

    def to_json(self) -> dict[str, Any]:
        """What ``run.json`` stores: ``{"version": V, group: {field: value, ...}, ...}``."""
        flat = self.flat_json()
        return {"version": self.VERSION, **{group: {name: flat[name] for name in names}
                                            for group, names in self.GROUPS.items()}}

    @classmethod
    def group_of(cls, name: str) -> str:
        """The group a field belongs to (``KeyError`` for a name that is not a field)."""
        for group, names in cls.GROUPS.items():
            if name in names:
                return group
        raise KeyError(name)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        """Settings from ``run.json``: migrated to ``VERSION``, unknown keys refused."""
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__}: stored settings must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("version", 1)
        d = migrate(d, version=version, current=cls.VERSION, migrations=cls.MIGRATIONS,
                    what=f"stored {cls.__name__}")
        d = cls._flatten(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"stored {cls.__name__} has unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"it was written by another deepfit version (known: {', '.join(sorted(known))})")
        return cls(**cls._decode(d))

    @classmethod
    def _flatten(cls, d: dict[str, Any]) -> dict[str, Any]:
        """The grouped layout back to fields; a group this class lacks, a group that is not an
        object or a field stored under another group than its own is an error naming it."""
        if not cls.GROUPS:
            return d
        flat: dict[str, Any] = {}
        for key, value in d.items():
            if key not in cls.GROUPS:
                try:
                    home = cls.group_of(key)
                except KeyError:
                    flat[key] = value  # not a field either: named as unknown by the caller
                    continue
                raise ConfigError(f"stored {cls.__name__}: {key!r} must be inside its group {home!r} "
                                  "(this version stores settings by group)")
            if not isinstance(value, dict):
                raise ConfigError(f"stored {cls.__name__}: group {key!r} must be a JSON object, "
                                  f"got {type(value).__name__}")
            for name, item in value.items():
                if name not in cls.GROUPS[key]:
                    try:
                        home = f"; it belongs in {cls.group_of(name)!r}"
                    except KeyError:
                        home = f" (known in {key!r}: {', '.join(cls.GROUPS[key])})"
                    raise ConfigError(f"stored {cls.__name__} has unknown key {name!r} in group {key!r}{home}")
                flat[name] = item
        return flat

    @classmethod
    def _decode(cls, d: dict[str, Any]) -> dict[str, Any]:
        """JSON values back to field values (e.g. lists to tuples); the default turns every
        list into a tuple for fields whose default is a tuple."""
        out = dict(d)
        for f in dataclasses.fields(cls):
            if f.name in out and isinstance(f.default, tuple) and isinstance(out[f.name], list):
                out[f.name] = tuple(out[f.name])
        return out
