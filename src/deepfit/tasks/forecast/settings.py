"""Settings of the forecast task: everything that decides a forecasting run (stored in ``run.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfit.errors import ConfigError
from deepfit.tasks.settings import TaskSettings

__all__ = ["ForecastSettings", "FREQ_ALIASES", "normalise_freq"]

# What --freq accepts, mapped to the pandas *period* alias deepfit works in (old and new
# pandas spellings alike: "M", "ME" and "MS" are all months).
FREQ_ALIASES: dict[str, str] = {
    "Y": "Y", "YE": "Y", "YS": "Y", "A": "Y", "AS": "Y",
    "Q": "Q", "QE": "Q", "QS": "Q",
    "M": "M", "ME": "M", "MS": "M",
    "W": "W", "D": "D", "B": "B", "H": "h", "h": "h", "T": "min", "min": "min",
}


def normalise_freq(freq: str | None) -> str | None:
    """``freq`` as a pandas period alias ("Y", "Q", "M", "W", "D", "B", "h", "min"), or None.

    Example:
        >>> normalise_freq("MS"), normalise_freq("QE"), normalise_freq(None)
        ('M', 'Q', None)
    """
    if freq is None:
        return None
    key = str(freq).strip()
    if key in FREQ_ALIASES:
        return FREQ_ALIASES[key]
    if key.upper() in FREQ_ALIASES:
        return FREQ_ALIASES[key.upper()]
    raise ConfigError(f"freq {freq!r} is not a frequency deepfit forecasts; use one of "
                      f"{', '.join(sorted(set(FREQ_ALIASES.values())))} (pandas aliases such as 'MS' also work)")


# The groups of tasks/settings.py (GROUP_DOCS; docs/settings.md).
GROUPS_V1: dict[str, tuple[str, ...]] = {
    "data": ("target", "time", "series", "freq", "known_covariates", "horizon", "season_length"),
    "split": ("backtest_windows",),
    "schedule": ("epochs", "time_limit", "refit"),
    "optimizer": ("batch_size", "lr", "weight_decay"),
    "model": ("context", "width", "blocks", "layers", "embed_dim", "members", "quantiles", "combine",
              "max_windows"),
    "run": ("seed", "checkpoint_every"),
}


@dataclass(frozen=True)
class ForecastSettings(TaskSettings):
    """Everything that decides a forecasting run (stored in ``run.json`` for ``--resume``).

    Example:
        >>> s = ForecastSettings(target="y", time="date", horizon=12, freq="M")
        >>> ForecastSettings.from_json(s.to_json()) == s
        True
    """

    VERSION = 1
    GROUPS = GROUPS_V1

    target: str = "y"
    time: str = "date"
    series: str | None = None  # the column naming each series (None: one series)
    horizon: int = 12
    freq: str | None = None  # None: inferred from the timestamps
    season_length: int | None = None  # None: from the frequency (M 12, Q 4, W 52, D 7, h 24, Y 1)
    known_covariates: tuple[str, ...] = ()
    # The last backtest_windows x horizon steps of every series are the rolling-origin backtest:
    # never a training target for the network, they choose the combination weights and give the
    # reported metrics.
    backtest_windows: int = 1
    epochs: int = 40
    time_limit: float | None = None
    # After the backtest, train the network again on the full history (the backtest windows are
    # then training targets too); it forecasts, with the weights the first network's backtest chose.
    refit: bool = True
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    context: int | None = None  # input window; None: max(3 x horizon, 2 x season, 8)
    width: int = 256
    blocks: int = 3
    layers: int = 2
    embed_dim: int = 8  # series embedding (0: none)
    members: int = 1  # independent networks averaged (an ensemble inside one model)
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    # How the network, Theta and seasonal-naive are combined: "auto" (weights on a 0.1 grid of the
    # simplex minimising backtest MASE), "deep", "theta" or "snaive" (that one alone).
    combine: str = "auto"
    max_windows: int = 200_000  # training windows kept (a seeded random subset beyond it)
    seed: int = 0
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "freq", normalise_freq(self.freq))
        qs = tuple(float(q) for q in self.quantiles)
        if not qs or any(not 0 < q < 1 for q in qs):
            raise ConfigError(f"quantiles must be numbers strictly between 0 and 1, got {self.quantiles!r}")
        object.__setattr__(self, "quantiles", tuple(sorted(set(qs) | {0.5})))
        object.__setattr__(self, "known_covariates", tuple(self.known_covariates))
        for name in ("horizon", "backtest_windows", "epochs", "batch_size", "width", "blocks", "layers", "members",
                     "max_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("context", "season_length"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer (or None: automatic), got {value!r}")
        if self.embed_dim < 0:
            raise ConfigError(f"embed_dim must be >= 0, got {self.embed_dim}")
        if self.combine not in ("auto", "deep", "theta", "snaive"):
            raise ConfigError(f"combine must be 'auto', 'deep', 'theta' or 'snaive', got {self.combine!r}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")

    @classmethod
    def _decode(cls, d: dict[str, Any]) -> dict[str, Any]:
        out = super()._decode(d)
        for name in ("quantiles", "known_covariates"):
            if isinstance(out.get(name), list):
                out[name] = tuple(out[name])
        return out
