"""Task settings: frozen dataclasses with a version, strict JSON, and named migrations.

Every task's settings class derives from :class:`TaskSettings`. What a run stores in
``run.json`` is ``to_json()``; ``from_json`` reads it back for ``--resume``:

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

__all__ = ["TaskSettings", "migrate", "explicit_fields", "rename_key"]


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
    to ``MIGRATIONS`` keyed by the old version) and may override ``_decode`` to turn JSON lists
    back into tuples.
    """

    VERSION: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    def to_json(self) -> dict[str, Any]:
        d = {"version": self.VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            d[f.name] = list(value) if isinstance(value, tuple) else (dict(value) if isinstance(value, dict) else value)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        """Settings from ``run.json``: migrated to ``VERSION``, unknown keys refused."""
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__}: stored settings must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("version", 1)
        d = migrate(d, version=version, current=cls.VERSION, migrations=cls.MIGRATIONS,
                    what=f"stored {cls.__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"stored {cls.__name__} has unknown key(s) {', '.join(map(repr, unknown))}; "
                              f"it was written by another deepfit version (known: {', '.join(sorted(known))})")
        return cls(**cls._decode(d))

    @classmethod
    def _decode(cls, d: dict[str, Any]) -> dict[str, Any]:
        """JSON values back to field values (e.g. lists to tuples); the default turns every
        list into a tuple for fields whose default is a tuple."""
        out = dict(d)
        for f in dataclasses.fields(cls):
            if f.name in out and isinstance(f.default, tuple) and isinstance(out[f.name], list):
                out[f.name] = tuple(out[f.name])
        return out
