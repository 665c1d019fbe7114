"""Run directories that appear complete or not at all.

A run works in ``<out>.incomplete/`` (settings in ``run.json``, checkpoints, logs) and, when
everything is written, that folder is renamed to ``<out>`` in one step. An interrupted run
therefore never leaves a half-made ``<out>``; ``--resume`` finds its work folder and continues.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError

__all__ = ["RunDir"]


class RunDir:
    """The final directory ``out`` and its work folder ``out.incomplete``."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.final = Path(out)
        if self.final.name in ("", ".", ".."):
            raise ConfigError(f"--out must name a directory to create, got {str(out)!r}")
        self.work = self.final.with_name(self.final.name + ".incomplete")

    @property
    def complete(self) -> bool:
        return (self.final / "run.json").exists()

    def check_new(self) -> None:
        """Raise unless a new run may start here (nothing is created yet)."""
        if self.final.exists() and (not self.final.is_dir() or any(self.final.iterdir())):
            raise ConfigError(f"{self.final} already exists and is not empty; choose another --out or remove it")
        if self.work.exists():
            raise ConfigError(
                f"{self.work} holds an interrupted run; pass --resume to continue it, or remove that folder"
            )

    def stored(self) -> dict[str, Any]:
        """The ``run.json`` of the run to resume (complete or interrupted)."""
        for folder in (self.final, self.work):
            if (folder / "run.json").exists():
                self._drop_stale_temps(folder)
                return json.loads((folder / "run.json").read_text(encoding="utf-8"))
        raise ConfigError(
            f"--resume: no interrupted run for {self.final} (no {self.work / 'run.json'}); drop --resume to start one"
        )

    def start(self, settings: dict[str, Any]) -> None:
        """Create the work folder and write ``run.json`` (call after the inputs have been checked)."""
        self.check_new()
        self.work.mkdir(parents=True)
        self.write_json("run.json", settings)

    def write_json(self, name: str, obj: Any) -> Path:
        from deepfit.engine.checkpoint import atomic_write_bytes

        path = self.work / name
        atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))
        return path

    def finish(self, *, keep: tuple[str, ...] = ()) -> Path:
        """Drop checkpoints not listed in ``keep``, then rename the work folder to the final one."""
        for ckpt in self.work.glob("*.ckpt"):
            if ckpt.name not in keep:
                ckpt.unlink()
        self._drop_stale_temps(self.work)
        if self.final.exists():  # an empty directory the user made beforehand
            self.final.rmdir()
        os.replace(self.work, self.final)
        return self.final

    @staticmethod
    def _drop_stale_temps(folder: Path) -> None:
        """Remove temp files of atomic writes cut short by a kill (they never replaced a real file)."""
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
