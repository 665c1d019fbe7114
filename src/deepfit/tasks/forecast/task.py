"""The forecast task: a table of time series in, a global forecaster and a run directory out.

Step by step: read and check the series (``data.py``: columns, timestamps, frequency, gaps and
missing values) → hold out the last ``backtest_windows x horizon`` steps of every series (the
rolling-origin backtest; never a training target) → windows of the rest, each scaled by its mean
absolute value (``windows.py``) → train one N-BEATS-style network across all series with the
pinball loss of every quantile (``deepfit.models.nbeats``; the Learner: exact resume from
``last.ckpt``) → forecast every backtest window with the network, Theta and seasonal-naive
(``baselines.py``) → choose the combination weights: the point of a 0.1 grid on the simplex of
(network, Theta, seasonal-naive) with the lowest mean backtest MASE (``combine="auto"``) →
with ``refit``, train the network again (next seed) on every window of the full history, the
backtest's included; it forecasts, the first one chose the weights →
metrics (MASE, sMAPE, WQL; each method's, the combination's and seasonal-naive's) and the report.

Short series: a series is left-padded (and masked) to the network's context, so any series with
one value or more gets a forecast. Series with fewer than 2 values before the backtest give no
training windows, and backtest windows whose origin leaves no history are skipped. When even the
longest series is not longer than ``backtest_windows x horizon + 1`` there is nothing to learn
from: a ``DataError`` says so.

Example:
    >>> import deepfit                                                                     # doctest: +SKIP
    >>> model = deepfit.fit("sales.csv", task="forecast", target="y", time="date", horizon=12)  # doctest: +SKIP
    >>> model.metrics["backtest_mase"], model.metrics["backtest_mase_snaive"]              # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from deepfit.errors import ConfigError, DataError
from deepfit.tasks.base import BasePredictor, Task
from deepfit.tasks.forecast.data import SeriesSet, read_series, season_of
from deepfit.tasks.forecast.metrics import Scores, mase_scale
from deepfit.tasks.forecast.predictor import METHODS, ForecastPredictor
from deepfit.tasks.forecast.settings import ForecastSettings
from deepfit.tasks.forecast.windows import make_windows
from deepfit.tasks.runner import Run, file_sha256, source_name

__all__ = ["ForecastTask", "choose_weights", "parse_list"]

# deepfit train flags of this task (flag dest -> setting), besides the common ones.
OWN_FLAGS = ("time", "series", "horizon", "freq", "known_covariates", "quantiles", "backtest_windows")
COMMON = ("target", "time_limit", "seed", "epochs", "batch_size", "lr", "checkpoint_every")


def parse_list(value: Any, what: str, cast: type = str) -> tuple:
    """A comma-separated flag (``"price,holiday"``) or a list as a tuple of ``cast`` values."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(cast(v.strip() if isinstance(v, str) else v) for v in items if str(v).strip())
    except ValueError as e:
        raise ConfigError(f"{what} takes comma-separated {cast.__name__} values, got {value!r}") from e


def choose_weights(medians: dict[str, np.ndarray], actual: np.ndarray, scale: np.ndarray,
                   step: float = 0.1) -> dict[str, float]:
    """The weights (a grid of ``step`` on the simplex of :data:`METHODS`) whose combined median has
    the lowest mean MASE over windows; ``medians[k]`` and ``actual`` are ``(N, H)``, ``scale``
    ``(N,)`` (NaN windows ignored). Ties go to the first grid point (more network weight)."""
    ok = np.isfinite(scale)
    n = int(round(1 / step))
    best, best_w = float("inf"), {k: 0.0 for k in METHODS}
    for a, b in itertools.product(range(n, -1, -1), range(n, -1, -1)):
        if a + b > n:
            continue
        w = {"deep": a / n, "theta": b / n, "snaive": (n - a - b) / n}
        comb = sum(w[k] * medians[k] for k in METHODS)
        score = float(np.mean(np.mean(np.abs(comb - actual), axis=1)[ok] / scale[ok])) if ok.any() else 0.0
        if score < best - 1e-12:
            best, best_w = score, w
    return best_w


class ForecastTask(Task):
    """``--task forecast``: see the module docstring."""

    kind = "forecast"
    Settings = ForecastSettings
    Predictor = ForecastPredictor
    describe = "a table of time series with task='forecast' (a target, a time and optionally a series column)"

    @classmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        return hints.get("task") == "forecast"

    @classmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(given) - set(COMMON) - {"task"} - set(OWN_FLAGS))
        if extra:
            raise ConfigError(f"--{extra[0].replace('_', '-')} does not apply to --task forecast (it takes --target, "
                              "--time, --series, --horizon, --freq, --known-covariates, --quantiles, "
                              "--backtest-windows, --epochs, --batch-size, --lr, --time-limit, --seed, "
                              "--checkpoint-every)")
        chosen = {k: v for k, v in given.items() if k in COMMON}
        for name in OWN_FLAGS:
            value = getattr(args, name, None)
            if value is None:
                continue
            if name == "known_covariates":
                value = parse_list(value, "--known-covariates")
            elif name == "quantiles":
                value = parse_list(value, "--quantiles", float)
            chosen[name] = value
        return chosen

    def train(self, data: Any, run: Run, *, test: Any = None) -> BasePredictor:
        s = self.settings
        if test is not None:
            raise ConfigError("a forecast run is scored on a rolling-origin backtest of its own history "
                              "(backtest_windows); drop test= and use `deepfit evaluate RUN data.csv` on other data")
        source = source_name(data)
        ss = read_series(data, target=s.target, time=s.time, series=s.series, freq=s.freq,
                         covariates=s.known_covariates, source=source)
        season = s.season_length or season_of(ss.freq)
        h, w = s.horizon, s.backtest_windows
        lengths = np.array([len(v) for v in ss.values])
        if lengths.max() < w * h + 2:
            raise DataError(f"{source}: the horizon is longer than the history: the longest series has "
                            f"{lengths.max()} values, and {w} backtest window(s) of horizon {h} need more than "
                            f"{w * h + 1}; lower --horizon or --backtest-windows, or give longer series")
        context = s.context or max(3 * h, 2 * season, 8)
        cutoffs = [int(n - w * h) for n in lengths]
        train_origins = [(i, e) for i, c in enumerate(cutoffs) for e in range(1, c)]
        rng = np.random.default_rng(s.seed)
        if len(train_origins) > s.max_windows:
            keep = np.sort(rng.choice(len(train_origins), s.max_windows, replace=False))
            train_origins = [train_origins[k] for k in keep]
        valid_origins = [(i, c) for i, c in enumerate(cutoffs) if c >= 1]
        cov_mean, cov_std = self._covariate_stats(ss, cutoffs)
        index = list(range(1, len(ss) + 1))
        common = dict(context=context, horizon=h, season=season, series_index=index, cov_mean=cov_mean,
                      cov_std=cov_std)
        train = make_windows(ss.values, ss.starts, ss.covariates, train_origins, limits=cutoffs, **common)
        valid = make_windows(ss.values, ss.starts, ss.covariates, valid_origins,
                             limits=[c + h for c in cutoffs], **common)
        run.start(s, data=source, data_sha256=file_sha256(data),
                  plan={"context": context, "season_length": season, "train_windows": len(train_origins)})
        predictor, history, train_s = self._fit(ss, train, valid, run, context, season, cov_mean, cov_std)
        t0 = time.perf_counter()
        table, weights, shown = self._backtest(predictor, ss, season)
        if s.refit:
            self._refit(predictor, ss, run, common)
        charts = self._charts(predictor, ss, *shown)
        summary = {"data": source, "series": len(ss), "frequency": ss.freq, "season length": season,
                   "horizon": h, "backtest windows": w, "context": context, "training windows": len(train_origins),
                   "epochs": s.epochs, "train seconds": round(train_s, 2),
                   "backtest and refit seconds": round(time.perf_counter() - t0, 2), "refit": s.refit, "notes": "; ".join(ss.notes) or "none"}
        predictor.info = {"source": source, "series": len(ss), "train_windows": len(train_origins),
                          "train_seconds": round(train_s, 2), "notes": ss.notes}

        def report(path: Path, p: BasePredictor) -> None:
            from deepfit.tasks.forecast.report import write_forecast_report

            write_forecast_report(path, title=f"deepfit forecast: {source}", summary=summary, metrics=p.metrics,
                                  history=history, table=table, weights=weights, charts=charts)

        run.report = report
        return predictor

    @staticmethod
    def summary_line(predictor: BasePredictor) -> str:
        m = predictor.metrics
        return (f"backtest MASE {m.get('backtest_mase', float('nan')):.4f} (seasonal-naive "
                f"{m.get('backtest_mase_snaive', float('nan')):.4f}), sMAPE {m.get('backtest_smape', float('nan')):.2f}, "
                f"WQL {m.get('backtest_wql', float('nan')):.4f}")

    # ------------------------------------------------------------------ steps

    def _covariate_stats(self, ss: SeriesSet, cutoffs: list[int]) -> tuple[np.ndarray, np.ndarray]:
        k = len(self.settings.known_covariates)
        if not k:
            return np.zeros(0), np.ones(0)
        rows = np.concatenate([c[:max(cut, 1)] for c, cut in zip(ss.covariates, cutoffs)])
        std = rows.std(0)
        return rows.mean(0), np.where(std > 0, std, 1.0)

    def _fit(self, ss: SeriesSet, train: Any, valid: Any, run: Run, context: int, season: int,
             cov_mean: np.ndarray, cov_std: np.ndarray) -> tuple[ForecastPredictor, list[dict], float]:
        s = self.settings
        t0 = time.perf_counter()
        model, history = self._train_network(ss, train, valid, run.work, run.resume_from(), s.seed)
        predictor = ForecastPredictor(
            model=model, columns={"target": s.target, "time": s.time, "series": s.series}, horizon=s.horizon,
            freq=ss.freq, convention=ss.convention, season_length=season, quantiles=list(s.quantiles),
            weights={"deep": 1.0}, series_ids=ss.ids,
            covariates={"names": list(s.known_covariates), "mean": cov_mean.tolist(), "std": cov_std.tolist()})
        return predictor, history, time.perf_counter() - t0

    def _train_network(self, ss: SeriesSet, train: Any, valid: Any, out_dir: Path | None, resume: Path | None,
                       seed: int) -> tuple[Any, list[dict]]:
        """One network trained on ``train`` windows (checkpoints in ``out_dir``, resumed from ``resume``)."""
        from deepfit.engine.callbacks import CSVLogger
        from deepfit.engine.learner import Learner
        from deepfit.engine.rng import seed_everything
        from deepfit.models.nbeats import NBeats, quantile_loss

        s = self.settings
        seed_everything(seed)
        model = NBeats(train.x.shape[1], s.horizon, s.quantiles, len(ss), n_calendar=train.calendar.shape[1],
                       n_covariates=train.covariates.shape[1], embed_dim=s.embed_dim, width=s.width,
                       blocks=s.blocks, layers=s.layers, members=s.members)
        callbacks = [CSVLogger(out_dir / "history.csv")] if out_dir is not None else []
        learner = Learner(model, train.tensors(), valid.tensors() if valid is not None and len(valid.x) else None,
                          loss=partial(quantile_loss, quantiles=s.quantiles), lr=s.lr, weight_decay=s.weight_decay,
                          batch_size=s.batch_size, seed=seed, grad_clip=1.0, progress=self.progress,
                          out_dir=out_dir, checkpoint_every=s.checkpoint_every if out_dir is not None else None,
                          callbacks=callbacks, budget=s.time_limit, compile=False)
        history = learner.fit_one_cycle(s.epochs, s.lr, resume=resume)
        return model.eval(), history

    def _refit(self, p: ForecastPredictor, ss: SeriesSet, run: Run, common: dict[str, Any]) -> None:
        """A second network on every window of the full history (the backtest's too), the same
        settings and the next seed; it replaces the first (which chose the weights and gave the
        backtest metrics). Its checkpoints live in ``refit/`` of the work folder."""
        import shutil

        lengths = [len(v) for v in ss.values]
        origins = [(i, e) for i, n in enumerate(lengths) for e in range(1, n)]
        if len(origins) > self.settings.max_windows:
            rng = np.random.default_rng(self.settings.seed + 1)
            keep = np.sort(rng.choice(len(origins), self.settings.max_windows, replace=False))
            origins = [origins[k] for k in keep]
        windows = make_windows(ss.values, ss.starts, ss.covariates, origins, limits=lengths, **common)
        folder = run.work / "refit" if run.work is not None else None
        resume = None
        if folder is not None:
            folder.mkdir(exist_ok=True)
            last = folder / "last.ckpt"
            resume = last if run.resuming and last.exists() else None
        model, _ = self._train_network(ss, windows, None, folder, resume, self.settings.seed + 1)
        p.model = model
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _backtest(self, p: ForecastPredictor, ss: SeriesSet,
                  season: int) -> tuple[list[dict[str, Any]], dict[str, float], tuple]:
        """Forecast every backtest window with each method, choose the weights, set the metrics;
        returns the table of the report, the weights and what the report's charts need."""
        s = self.settings
        h, qs = s.horizon, list(s.quantiles)
        origins = [(i, len(v) - k * h) for k in range(s.backtest_windows, 0, -1)
                   for i, v in enumerate(ss.values) if len(v) - k * h >= 1]
        forecasts = p.forecast_at(ss, origins)
        actual = np.stack([ss.values[i][o:o + h] for i, o in origins])
        scale = np.array([mase_scale(ss.values[i][:o], season) for i, o in origins])
        mid = qs.index(0.5)
        if s.combine == "auto":
            weights = choose_weights({k: f[..., mid] for k, f in forecasts.items()}, actual, scale)
        else:
            weights = {k: float(k == s.combine) for k in METHODS}
        p.weights = weights
        combined = p.combine(forecasts)
        scores = {name: Scores(qs) for name in ("combined", *METHODS)}
        per_series = np.full(len(origins), np.nan)
        for row, (i, o) in enumerate(origins):
            history = ss.values[i][:o]
            per_series[row] = scores["combined"].add(actual[row], combined[row], history, season)
            for k in METHODS:
                scores[k].add(actual[row], forecasts[k][row], history, season)
        summaries = {k: v.summary() for k, v in scores.items()}
        metrics = {f"backtest_{m}": summaries["combined"][m] for m in ("mase", "smape", "wql")}
        for k in METHODS:
            metrics.update({f"backtest_{m}_{k}": summaries[k][m] for m in ("mase", "smape", "wql")})
        p.metrics = metrics
        names = {"combined": "deepfit (combined)", "deep": "network alone", "theta": "Theta",
                 "snaive": "seasonal-naive"}
        table = [{"frequency": ss.freq, "method": names[k], "MASE": summaries[k]["mase"],
                  "sMAPE": summaries[k]["smape"], "WQL": summaries[k]["wql"],
                  "MASE / seasonal-naive": summaries[k]["mase"] / summaries["snaive"]["mase"],
                  "windows": int(summaries[k]["n"])} for k in ("combined", *METHODS)]
        return table, weights, (origins, per_series, combined, qs)

    @staticmethod
    def _charts(p: ForecastPredictor, ss: SeriesSet, origins: list[tuple[int, int]], per_series: np.ndarray,
                combined: np.ndarray, qs: list[float]) -> list[str]:
        """SVG charts of the best, median and worst series by their latest backtest window's MASE:
        history, that window's forecast, and the forecast past the end (the final network's)."""
        from deepfit.tasks.forecast.report import forecast_chart_svg as chart

        last = {i: row for row, (i, _) in enumerate(origins)}  # each series' latest backtest window
        rows = sorted((per_series[r], r) for r in last.values() if np.isfinite(per_series[r]))
        if not rows:
            return []
        picks = {"best": rows[0][1], "median": rows[len(rows) // 2][1], "worst": rows[-1][1]}
        lo, hi = qs.index(min(qs)), qs.index(max(qs))
        mid = qs.index(0.5)
        out = []
        chosen = [(label, r) for label, r in picks.items()]
        ends = [(origins[r][0], len(ss.values[origins[r][0]])) for _, r in chosen]
        # With known covariates the training table has no future rows: no forecast past the end.
        future = None if p.cov_names else p.combine(p.forecast_at(ss, ends, future=True))
        for k, (label, r) in enumerate(chosen):
            i, o = origins[r]
            v = ss.values[i]
            start = max(0, o - 4 * p.horizon)
            bands = [(o - start, combined[r][:, lo], combined[r][:, mid], combined[r][:, hi])]
            if future is not None:
                bands.append((len(v) - start, future[k][:, lo], future[k][:, mid], future[k][:, hi]))
            out.append(chart(v[start:], bands, title=f"{label}: series {ss.ids[i]} (backtest MASE "
                                                     f"{per_series[r]:.3f})"))
        return out
