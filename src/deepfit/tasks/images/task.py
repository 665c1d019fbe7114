"""Images: a folder (or a table with an image-path column) in, a trained :class:`ImagePredictor` out.

The path, step by step (:meth:`ImageTask.train`): read the data (``root/<class>/*.jpg``, optional
``train``/``valid``/``test`` split folders, or a CSV/DataFrame whose image-path column is found
by type inference, plus any other columns, which join the model) and split off a test set
(stratified; or the ``test`` data / ``test`` folder) and a validation set → look at a few images
for their native size → pick the recipe (image side, backbone, epochs, batch size, learning
rate: :func:`~deepfit.tasks.images.settings.recipe`) → decode every image once into a uint8
tensor in memory (unreadable files are skipped and listed in the report; sets larger than
``max_memory_gb`` stream from the files instead) → train with the engine's ``Learner``:
augmentation on each batch on the device (:mod:`deepfit.augment.image`; no horizontal flips
unless ``flip=True``), AdamW with one-cycle, label smoothing, optionally mixup/cutmix, a
pretrained backbone from a local safetensors file with discriminative learning rates and a
frozen first epoch → evaluate (optionally with test-time augmentation). The runner
(``deepfit.tasks.runner``) writes the artifact, ``metrics.json`` and ``report.html``.

Time budget: with ``time_limit`` and no explicit ``epochs``, a few training steps are timed and
the one-cycle schedule is shortened to end within 90% of the budget (stored in ``run.json`` as
``plan["epochs_planned"]``, so a resumed run keeps it); a ``TimeLimit`` at 95% is the hard stop.

Under ``torchrun`` every rank reads, splits and decodes the same data (all of it is seeded or
read from the files), and trains on its share of every global batch of ``batch_size x ranks``
images (DDP; streamed sets: :class:`~deepfit.data.images.ImageBatches` shards by rank). What
is measured against the clock — the epoch count of a time-limited run — is decided by rank 0
and broadcast; the ``TimeLimit`` makes every rank stop after the same step; rank 0 writes.

Example:
    >>> from deepfit.tasks.images import ImageSettings, fit_images          # doctest: +SKIP
    >>> predictor = fit_images("photos/", ImageSettings(), out="runs/photos")  # doctest: +SKIP
    >>> predictor.predict(["photos/cat/1.jpg"])                              # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from deepfit.engine.distributed import from_rank_0
from deepfit.errors import ConfigError, DataError
from deepfit.features.target import MULTILABEL_SEP
from deepfit.tasks.base import BasePredictor, Task
from deepfit.tasks.images.predictor import ImagePredictor
from deepfit.tasks.images.readers import colour_images, data_fingerprint, is_image_data, native_side, read_training
from deepfit.tasks.images.rows import ImageData, RowEncoder
from deepfit.tasks.images.settings import (PRETRAINED_SIDES, ImageSettings, pretrained_choice, pretrained_recipe,
                                           recipe)
from deepfit.tasks.runner import Run, source_name

__all__ = ["ImageTask", "fit_images", "probe_step_seconds", "FINE_TUNE_EPOCHS"]

CLI_SETTINGS = ("task", "target", "time_limit", "seed", "epochs", "batch_size", "lr", "checkpoint_every",
                "split_by", "group", "types", "pretrained")
# Choosing the side of a pretrained run against the time limit: the largest of PRETRAINED_SIDES
# at which one pass to cache features and this many fine-tuning epochs fit in 80% of the budget
# (bench/transfer_images.py seed 0: aiming at 2 chose 160 px, where the time limit cut the
# one-cycle schedule after 1 of 2 epochs and fine-tuning lost 7 points against the frozen head).
FINE_TUNE_EPOCHS = 3


# ----------------------------------------------------------------------------- what the steps pass on


@dataclass
class Encoded:
    """The training and validation sets as the Learner takes them."""

    rows: RowEncoder
    feature: Any  # the fitted ImageFeature
    stream: bool  # training images stream from the files (ImageBatches)
    x_fit: torch.Tensor | None  # decoded training images (None when streaming)
    x_valid: torch.Tensor
    train: Any  # (images, table..., y) or ImageBatches
    valid: tuple[torch.Tensor, ...]  # (images, table..., y)
    probe: tuple[Any, ...]  # (images, table tensors, y) to time a step on
    batch_size: int


@dataclass
class Network:
    """The model, the training-time wrapper that augments each batch, and the losses."""

    model: Any  # ImageTableModel: what the artifact holds
    net: torch.nn.Module  # AugmentedImages(model)
    augment: Any
    mix: Any
    base_loss: Any
    loss: Any


# ----------------------------------------------------------------------------- the task


class ImageTask(Task):
    """Image classification, single- or multi-label (see the module docstring)."""

    kind = "image"
    Settings = ImageSettings
    Predictor = ImagePredictor
    distributed = True
    describe = "a folder of class folders of images, or a table with an image-path column"

    @classmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        if hints.get("task") == "lm":
            return False
        return is_image_data(data, target=hints.get("target"), types=hints.get("types") or None)

    @classmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(given) - set(CLI_SETTINGS))
        if extra:
            raise ConfigError(f"--{extra[0].replace('_', '-')} does not apply to images")
        if given.get("task") == "regress":
            raise ConfigError("regression on images is not supported yet; folders train a classifier "
                              "(drop --task regress)")
        return dict(given)

    @staticmethod
    def summary_line(predictor: BasePredictor) -> str:
        """The metrics, then which network: pretrained (name, side) or from scratch."""
        plan = getattr(predictor, "info", {}).get("plan", {})
        line = Task.summary_line(predictor)
        if plan.get("pretrained"):
            return f"{line}  [{plan['pretrained']} pretrained on ImageNet, fine-tuned at {plan['size']} px]"
        return f"{line}  [{plan.get('backbone', '?')} trained from scratch at {plan.get('size', '?')} px]"

    @staticmethod
    def default_out(data: Any) -> str:
        path = Path(os.path.abspath(str(data)))
        return f"runs/{path.name if path.is_dir() else path.stem}"

    def identity(self, data: Any) -> str | None:
        return data_fingerprint(data)

    def train(self, data: Any, run: Run, *, test: Any = None) -> BasePredictor:
        from deepfit.engine import distributed
        from deepfit.engine.rng import seed_everything

        s = self.settings
        self.ddp = distributed.setup()
        d = self._read(data, test)
        native = native_side([str(p) for p in d.fit[d.image_column]])
        plan = run.plan or self._recipe(d, native)
        enc = self._encode(d, plan)
        # Inputs are checked: only now does the run folder appear.
        run.start(s, data=d.source, data_sha256=self.identity(data),
                  test=source_name(test) if test is not None else None, plan=plan)
        seed_everything(s.seed)
        network = self._network(d, enc, plan)
        head = None
        if self._cached_head(d, enc, network, plan) and run.resume_from() is None:
            # The frozen phase on features computed once; a resumed run past it has its result in the checkpoint.
            head = self._fit_head(d, enc, network, plan)
        epochs = self._plan_epochs(d, enc, network, plan, run)
        plan = {**plan, "epochs_planned": epochs}
        history, time_limit = self._fit(d, enc, network, plan, run)
        info = {
            "source": d.source, "images": d.rows, "train_rows": int(len(d.fit)), "valid_rows": int(len(d.valid)),
            "test_rows": int(len(d.test)) if d.test is not None else 0, "streamed": enc.stream,
            "native_side": native, "plan": plan, "augment": network.augment.config(), "epochs": len(history),
            "stopped_by_time_limit": bool(time_limit and time_limit.stopped), "fit_seconds": round(run.elapsed(), 2),
            "skipped": [{"path": k.path, "reason": k.reason} for k in d.skipped[:200]], "notes": d.notes,
        }
        if plan.get("pretrained"):
            info["pretrained"] = network.model.backbone.pretrained  # name, package, version, checksums
            if head is not None:
                info["head_phase"] = head
        predictor = ImagePredictor(task=d.task, target=enc.rows.target, feature=enc.feature, preprocessor=enc.rows.pre,
                                   model=network.model, info=info, tta=s.tta, flip=s.flip)
        evaluated = self._evaluate(d, enc, predictor)

        def report(path: Path, p: BasePredictor) -> None:
            from deepfit.tasks.images.report import image_report

            image_report(path, predictor=p, history=history, train_frame=d.fit, train_images=enc.x_fit,
                         train_labels=enc.rows.y(d.fit), image_column=d.image_column, **evaluated)

        run.report = report
        return predictor

    # ------------------------------------------------------------------ the steps of train

    def _read(self, data: Any, test: Any) -> ImageData:
        """Read the training data, drop rows without a label, decide the task, split."""
        s = self.settings
        source = source_name(data)
        df, image_col, target, infos, skipped = read_training(data, s)
        notes: list[str] = []
        labels = df[target]
        missing = labels.isna() | (labels.astype(str).str.strip() == "")
        if missing.all():
            raise DataError(f"target column '{target}' in {source} has no values")
        if missing.any():
            notes.append(f"{int(missing.sum())} rows without a '{target}' value were left out")
            df = df.loc[~missing].reset_index(drop=True)
        task = s.task
        if task == "auto":
            multi = df[target].astype(str).str.contains(MULTILABEL_SEP, regex=False).any()
            task = "multilabel" if multi else "classify"
        fit_df, valid_df, test_df = self._split(df, target, task, test, skipped)
        return ImageData(source=source, rows=int(len(df)), image_column=image_col, target=target, task=task,
                         infos=infos, fit=fit_df, valid=valid_df, test=test_df, skipped=skipped, notes=notes)

    def _split(self, df: pd.DataFrame, target: str, task: str, test: Any, skipped: list[Any]
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        """(train, valid, test) frames: given split folders, given test data, or stratified carve-outs."""
        from deepfit.data.split import split_indices

        s = self.settings
        strat = target if task == "classify" else None
        if test is not None:
            test_df, _, _, _, test_skipped = read_training(test, s)
            skipped += test_skipped
            pool = df
        elif "split" in df.columns and (df["split"] == "test").any():
            test_df = df.loc[df["split"] == "test"].reset_index(drop=True)
            pool = df.loc[df["split"] != "test"].reset_index(drop=True)
        elif s.test_size > 0:
            tr, te = split_indices(df, target=strat, task="classify", seed=s.seed, test_size=s.test_size,
                                   by=s.split_by, group=s.group)
            pool, test_df = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
        else:
            pool, test_df = df, None
        if "split" in pool.columns and (pool["split"] == "valid").any():
            return (pool.loc[pool["split"] != "valid"].reset_index(drop=True),
                    pool.loc[pool["split"] == "valid"].reset_index(drop=True), test_df)
        fr, va = split_indices(pool, target=strat, task="classify", seed=s.seed + 1, test_size=s.valid_size,
                               by=s.split_by, group=s.group)
        return pool.iloc[fr].reset_index(drop=True), pool.iloc[va].reset_index(drop=True), test_df

    def _encode(self, d: ImageData, plan: dict[str, Any]) -> Encoded:
        """Decode (or plan to stream) the images at the plan's size; fit the targets and the other columns."""
        from deepfit.features.image import ImageFeature, channel_stats

        s = self.settings
        size = int(plan["size"])
        rows = RowEncoder(d, size=size, num_workers=s.num_workers)
        # Sets too large for memory stream from the files (decode, random resized crop and flip in
        # worker processes: deepfit.data.images.ImageBatches); the rest is decoded once.
        stream = len(d.fit) * 3 * size * size > s.max_memory_gb * 1e9
        if stream and (d.task != "classify" or rows.columns):
            d.notes.append("the set is larger than max_memory_gb but streaming supports single-label images without "
                           "other columns only: decoding it all into memory")
            stream = False
        feature = ImageFeature(d.image_column, size=size, workers=s.num_workers)
        x_fit = None
        if stream:
            feature.fit(d.fit[d.image_column])  # channel statistics of a sample of 512 images
            d.notes.append(f"{len(d.fit)} training images streamed from the files (larger than "
                           f"max_memory_gb={s.max_memory_gb:g} once decoded)")
        else:
            d.fit, x_fit = rows.decoded(d.fit, "training")
            feature.mean, feature.std = channel_stats(x_fit)
            feature.std = [max(v, 1e-3) for v in feature.std]
            feature.fitted = True
        d.valid, x_valid = rows.decoded(d.valid, "validation")
        if len(d.fit) < 2 or len(d.valid) < 1:
            raise DataError(f"{d.source}: too few readable images to train ({len(d.fit)} training, {len(d.valid)} "
                            "validation); see the skipped files: "
                            + "; ".join(f"{k.path}: {k.reason}" for k in d.skipped[:5]))
        rows.fit(d.fit)
        valid = (x_valid, *rows.table(d.valid), rows.y(d.valid))
        batch_size = min(int(plan["batch_size"]), len(d.fit))
        if stream:
            from deepfit.data.images import ImageBatches

            train: Any = ImageBatches(list(d.fit[d.image_column]), rows.y(d.fit).numpy(), size=size,
                                      batch_size=batch_size, augment=True, flip=s.flip, seed=s.seed,
                                      rank=self.ddp.rank, world_size=self.ddp.world_size, num_workers=s.num_workers)
            first = next(iter(train.iterate(0)))
            probe = (first[0], (), first[-1])
        else:
            train = (x_fit, *rows.table(d.fit), rows.y(d.fit))
            probe = (train[0], tuple(train[1:-1]), train[-1])
        return Encoded(rows=rows, feature=feature, stream=stream, x_fit=x_fit, x_valid=x_valid, train=train,
                       valid=valid, probe=probe, batch_size=batch_size)

    def _recipe(self, d: ImageData, native: float) -> dict[str, Any]:
        """The plan of a new run: a packaged pretrained backbone when asked for (or chosen by
        ``pretrained='auto'`` for colour photos), at a side fitted to the time limit; else :func:`recipe`."""
        s = self.settings
        paths = [str(p) for p in d.fit[d.image_column]]
        name, why = pretrained_choice(native, colour_images(paths), s)
        if name is None:
            if s.pretrained == "auto":
                d.notes.append(why)
            return recipe(native, len(d.fit), s)
        side, how = (s.size, "as asked") if s.size else self._pretrained_side(len(d.fit) + len(d.valid), native)
        d.notes.append(f"{why}; fine-tuned at {side} px ({how})")
        return pretrained_recipe(name, side, len(d.fit), s)

    def _pretrained_side(self, n_images: int, native: float) -> tuple[int, str]:
        """The side to fine-tune at: without a time limit 224 (the weights' own) for images of
        160 px or more, else 128; with one, the largest of ``PRETRAINED_SIDES`` at which a
        features pass over ``n_images`` and ``FINE_TUNE_EPOCHS`` epochs fit in 80% of it (a
        training step timed at each side in turn, 16 images, until one does not fit)."""
        s = self.settings
        if not s.time_limit:
            side = 224 if native >= 160 else 128
            return side, "no time limit"
        from deepfit.models.efficientnet_lite import EfficientNetLite0

        net, batch = EfficientNetLite0(n_outputs=10, channels_last=True), 16
        y = torch.randint(0, 10, (batch,))
        side, estimate = PRETRAINED_SIDES[0], None
        for candidate in PRETRAINED_SIDES:
            x = torch.randn(batch, 3, candidate, candidate)
            step = probe_step_seconds(net, torch.nn.functional.cross_entropy, x, (), y, batch) / batch
            seconds = n_images * step * (FINE_TUNE_EPOCHS + 0.5)  # + the features pass (a forward: ~0.5 step)
            if estimate is not None and seconds > 0.8 * s.time_limit:
                break
            side, estimate = candidate, (seconds, step)
        side, estimate = from_rank_0((side, estimate))
        return side, (f"time limit {s.time_limit:g}s: {estimate[0]:.0f}s estimated for {FINE_TUNE_EPOCHS} epochs at "
                      f"{side} px, {estimate[1] * 1000:.1f} ms per image measured")

    def _cached_head(self, d: ImageData, enc: Encoded, network: Network, plan: dict[str, Any]) -> bool:
        """Whether the frozen phase trains the head on features computed once (the CPU fast path):
        a packaged pretrained backbone on the CPU, one process, images alone (no table columns),
        held in memory, no mixup/cutmix, and ``freeze_epochs`` > 0."""
        return bool(plan.get("pretrained") and plan.get("head_epochs") and self.settings.freeze_epochs
                    and not torch.cuda.is_available() and self.ddp.world_size == 1 and not enc.stream
                    and network.model.table is None and network.mix is None)

    def _fit_head(self, d: ImageData, enc: Encoded, network: Network, plan: dict[str, Any]) -> dict[str, Any]:
        """The frozen phase of fine-tuning, fast: the backbone (eval mode: BatchNorm statistics
        frozen) encodes the training and validation images once, then the head alone trains for
        ``head_epochs`` passes over those features (AdamW, one-cycle at ``head_lr``). Deterministic
        for a seed, so a run resumed before the fine-tuning checkpoint repeats it exactly."""
        from deepfit.engine.learner import Learner

        model, t0 = network.model, time.perf_counter()
        model.eval()
        with torch.inference_mode():
            # Batches of 64: at 160 px batches of 256 spent 4x as long per image (activations beyond the caches).
            f_fit = torch.cat([model.features(enc.x_fit[i:i + 64]) for i in range(0, len(enc.x_fit), 64)])
            f_valid = torch.cat([model.features(enc.x_valid[i:i + 64]) for i in range(0, len(enc.x_valid), 64)])
        features_s = time.perf_counter() - t0
        head = torch.nn.Sequential(model.drop, model.head)  # the model's own head: trained in place
        learner = Learner(head, (f_fit.clone(), enc.train[-1]), (f_valid.clone(), enc.valid[-1]),
                          loss=network.base_loss, metrics=["accuracy"] if d.task == "classify" else [],
                          lr=float(plan["head_lr"]), weight_decay=self.settings.weight_decay,
                          batch_size=enc.batch_size, seed=self.settings.seed, progress=False, compile=False)
        history = learner.fit_one_cycle(int(plan["head_epochs"]))
        model.train()
        result = {"features_seconds": round(features_s, 2), "seconds": round(time.perf_counter() - t0, 2),
                  "epochs": int(plan["head_epochs"]), **{k: v for k, v in history[-1].items() if k.startswith("valid_")}}
        d.notes.append(f"frozen phase on cached features: {len(f_fit)} images encoded once in {features_s:.1f}s, then "
                       f"{plan['head_epochs']} head epochs ({result['seconds'] - features_s:.1f}s)"
                       + (f", valid accuracy {result['valid_accuracy']:.3f}" if "valid_accuracy" in result else ""))
        return result

    def _network(self, d: ImageData, enc: Encoded, plan: dict[str, Any]) -> Network:
        """The model (seeded by the caller), its batch augmentation and the losses."""
        from deepfit.augment.image import AugmentedImages, ImageAugment, MixBatch, MixedLoss, default_augment
        from deepfit.engine.losses import get_loss
        from deepfit.models.multimodal import ImageTableModel
        from deepfit.models.resnet import load_weights
        from deepfit.pretrained.efficientnet import load_pretrained

        s, size = self.settings, int(plan["size"])
        model = ImageTableModel(n_outputs=enc.rows.target.n_outputs, backbone=plan["backbone"],
                                backbone_config=plan["backbone_config"], mean=plan.get("mean", enc.feature.mean),
                                std=plan.get("std", enc.feature.std), dropout=float(plan.get("dropout", 0.0)),
                                table_spec=enc.rows.pre.spec() if enc.rows.pre is not None else None)
        if plan.get("pretrained"):
            load_pretrained(model.backbone, plan["pretrained"])
        elif s.weights_file:
            loaded = load_weights(model.backbone, s.weights_file)
            d.notes.append(f"backbone initialised from {s.weights_file}: {len(loaded['loaded'])} tensors loaded, "
                           f"{len(loaded['skipped'])} skipped (shape), {len(loaded['missing'])} fresh")
        mix = None
        if s.mixup:
            mix = MixBatch("mixup", alpha=s.mixup)
        elif s.cutmix:
            mix = MixBatch("cutmix", alpha=s.cutmix)
        augment = default_augment(size, flip=s.flip)
        if enc.stream:  # the workers already crop and flip
            augment = ImageAugment(**{**augment.config(), "crop_scale": None, "flip": 0.0})
        base_loss = get_loss("cross_entropy" if d.task == "classify" else "bce",
                             label_smoothing=s.label_smoothing if d.task == "classify" else 0.0)
        loss = MixedLoss(base_loss, mix) if mix is not None else base_loss
        return Network(model=model, net=AugmentedImages(model, augment, mix), augment=augment, mix=mix,
                       base_loss=base_loss, loss=loss)

    def _plan_epochs(self, d: ImageData, enc: Encoded, network: Network, plan: dict[str, Any], run: Run) -> int:
        """The number of epochs: the plan's, or with a time limit as many as fit in 90% of it
        (timed on a few steps; under torchrun rank 0's count, broadcast); stored in ``run.json`` so a
        resumed run keeps it."""
        s = self.settings
        if "epochs_planned" in plan:
            return int(plan["epochs_planned"])
        epochs = int(plan["epochs"])
        if s.time_limit and s.epochs is None:
            # Fit the one-cycle schedule into the budget: time a few steps, keep 10% in reserve.
            step_s = probe_step_seconds(network.net, network.base_loss, *enc.probe, enc.batch_size)
            steps_per_epoch = math.ceil(len(d.fit) / (enc.batch_size * self.ddp.world_size))  # on each rank
            left = s.time_limit * 0.9 - run.elapsed()
            epochs = int(max(1, min(epochs, left // (step_s * steps_per_epoch * 1.1))))
            note = f"time limit {s.time_limit:g}s: {epochs} epochs planned ({step_s * 1000:.0f} ms per step measured)"
            epochs, note = from_rank_0((epochs, note))  # every rank trains as many epochs as rank 0 planned
            d.notes.append(note)
        run.update_plan(**plan, epochs_planned=epochs)
        return epochs

    def _fit(self, d: ImageData, enc: Encoded, network: Network, plan: dict[str, Any], run: Run
             ) -> tuple[list[dict], Any]:
        """Train with one-cycle; returns the history and the TimeLimit callback (or None)."""
        from deepfit.engine.callbacks import CSVLogger, TimeLimit
        from deepfit.engine.learner import Learner
        from deepfit.models.resnet import discriminative_groups
        from deepfit.tasks.images.callbacks import FreezeFirst

        s = self.settings
        callbacks: list[Any] = []
        time_limit = None
        if s.time_limit:
            time_limit = TimeLimit(max(s.time_limit * 0.95 - run.elapsed(), 0.05 * s.time_limit))
            callbacks.append(time_limit)
        if run.work is not None:
            callbacks.append(CSVLogger(run.work / "history.csv"))
        optimizer: Any = "adamw"
        lr = float(plan["lr"])
        if s.weights_file or plan.get("pretrained"):
            groups = discriminative_groups(network.model, lr_ratio=s.lr_ratio, weight_decay=s.weight_decay)
            optimizer = lambda _groups: torch.optim.AdamW(groups, lr=lr)  # noqa: E731 - our groups, not the default two
            if s.freeze_epochs and not self._cached_head(d, enc, network, plan):
                callbacks.append(FreezeFirst(network.model, s.freeze_epochs))
        learner = Learner(
            network.net, enc.train, enc.valid, loss=network.loss, metrics=["accuracy"] if d.task == "classify" else [],
            optimizer=optimizer, lr=lr, weight_decay=s.weight_decay, batch_size=enc.batch_size, seed=s.seed,
            progress=self.progress, out_dir=run.work, checkpoint_every=s.checkpoint_every, callbacks=callbacks,
            compile=False if network.mix is not None else "auto",
        )
        history = learner.fit_one_cycle(int(plan["epochs_planned"]), resume=run.resume_from())
        network.model.eval()
        return history, time_limit

    def _evaluate(self, d: ImageData, enc: Encoded, predictor: ImagePredictor) -> dict[str, Any]:
        """Set the validation and test metrics; returns what the report shows of the evaluated set
        (the test set, else the validation set)."""
        valid_probs = predictor.proba_tensors(enc.valid[:-1])
        metrics = {f"valid_{k}": v for k, v in predictor.metrics_of(valid_probs, enc.valid[-1]).items()}
        shown = {"eval_frame": d.valid, "eval_images": enc.x_valid, "eval_probs": valid_probs,
                 "eval_labels": enc.valid[-1]}
        if d.test is not None and len(d.test):
            # In chunks, so a large test set is never decoded all at once when streaming.
            chunk = 2048 if enc.stream else max(len(d.test), 1)
            kept, probs, images = [], [], []
            for lo in range(0, len(d.test), chunk):
                part, x_part = enc.rows.decoded(d.test.iloc[lo:lo + chunk], "test")
                kept.append(part)
                probs.append(predictor.proba_tensors((x_part, *enc.rows.table(part))))
                if not enc.stream:
                    images.append(x_part)
            d.test = pd.concat(kept, ignore_index=True)
            test_probs, y_test = torch.cat(probs), enc.rows.y(d.test)
            metrics.update({f"test_{k}": v for k, v in predictor.metrics_of(test_probs, y_test).items()})
            shown = {"eval_frame": d.test, "eval_images": torch.cat(images) if images else None,
                     "eval_probs": test_probs, "eval_labels": y_test}
        predictor.metrics = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}
        return shown


def probe_step_seconds(model: torch.nn.Module, loss: Any, images: torch.Tensor, extra: tuple, y: torch.Tensor,
                       batch: int) -> float:
    """Seconds per training step: the faster of two batches after a warm-up one (forward + backward,
    no update, grads cleared; BatchNorm statistics restored, so the probe leaves the model as it found it)."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.train()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = model(images[:batch], *(e[:batch] for e in extra))
        loss(out, y[:batch]).backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return min(times[1:]) * 1.15  # + optimizer step and loader


# ----------------------------------------------------------------------------- entry points


def fit_images(
    data: Any,
    settings: ImageSettings | None = None,
    *,
    test: Any = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> ImagePredictor:
    """Train an image classifier (see the module docstring); returns an :class:`ImagePredictor`.

    The image task through the runner: ``deepfit.tasks.runner.fit("image", ...)``.

    Args:
        data: a folder with one sub-folder per class (optionally under ``train``/``valid``/``test``),
            or a CSV/Parquet file or DataFrame with an image-path column and the ``settings.target``
            column (other columns join the model).
        settings: :class:`ImageSettings` (default: all automatic).
        test: labelled test data in the same forms (default: hold out ``test_size``).
        out: run directory to create (built in ``<out>.incomplete`` and renamed when complete).
        resume: continue the interrupted run in ``out`` exactly, with its stored settings
            (settings given here that differ from them are refused).
        progress: print progress.

    Example:
        >>> predictor = fit_images("digits_png/", ImageSettings(seed=0), out="runs/digits")  # doctest: +SKIP
        >>> predictor.metrics["test_accuracy"]                                               # doctest: +SKIP
        0.99
    """
    from deepfit.tasks.runner import fit

    predictor = fit("image", data, settings, test=test, out=out, resume=resume, progress=progress)
    return predictor  # type: ignore[return-value]
