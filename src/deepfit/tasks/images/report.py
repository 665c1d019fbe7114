"""``report.html`` for an image run: summary, curves, metrics, a grid of training images with their
labels, the confusion matrix, and the worst-predicted images with predicted and true labels.

Images are embedded as small PNG data URIs, so the page opens offline and stays one file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepfit.report import confusion_matrix_html, table_html, write_report

__all__ = ["image_report", "image_grid_html"]

SAMPLES = 32
WORST = 16
THUMB = 96  # px: thumbnails are upscaled (nearest) to at least this side, so tiny images stay visible


def _png_uri(image: torch.Tensor) -> str:
    """A uint8 (3, H, W) image as a ``data:image/png;base64,...`` URI."""
    from PIL import Image

    array = image.permute(1, 2, 0).contiguous().numpy()
    picture = Image.fromarray(array)
    side = max(array.shape[:2])
    if side < THUMB:
        factor = -(-THUMB // side)
        picture = picture.resize((array.shape[1] * factor, array.shape[0] * factor), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_grid_html(images: torch.Tensor, captions: list[str]) -> str:
    """A wrapping grid of uint8 ``(N, 3, H, W)`` images, each with an HTML-escaped caption."""
    cells = []
    for image, caption in zip(images, captions):
        cells.append(f'<figure style="display:inline-block;margin:4px;text-align:center;font-size:12px">'
                     f'<img src="{_png_uri(image)}" width="{THUMB}" style="image-rendering:pixelated"><br>'
                     f"<figcaption>{caption}</figcaption></figure>")
    return f'<div>{"".join(cells)}</div>'


def image_report(path: Path, *, predictor: Any, history: list[dict[str, Any]], train_frame: pd.DataFrame,
                 train_images: torch.Tensor | None, train_labels: torch.Tensor, eval_frame: pd.DataFrame,
                 eval_images: torch.Tensor | None, eval_probs: torch.Tensor, eval_labels: torch.Tensor,
                 image_column: str) -> Path:
    """Write the report of an image run (see the module docstring). ``train_images`` and
    ``eval_images`` may be None (a streamed run): the images shown are then decoded from the files."""
    from deepfit.data.images import decode_images

    def pictures(images: torch.Tensor | None, frame: pd.DataFrame, rows: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        if images is not None:
            return images[torch.from_numpy(rows)], rows
        decoded, _, keep = decode_images([str(frame[image_column].iloc[i]) for i in rows], predictor.feature.size,
                                         workers=0)
        return decoded, rows[keep]

    info = predictor.info
    classes = [str(c) for c in predictor.classes]
    plan = info["plan"]
    summary = {
        "data": info["source"], "task": predictor.task, "classes": len(classes), "images": info["images"],
        "train / valid / test": f"{info['train_rows']} / {info['valid_rows']} / {info['test_rows']}",
        "native side (px)": info["native_side"], "model input (px)": plan["size"],
        "backbone": plan["backbone"], "epochs": info["epochs"], "batch": plan["batch_size"], "lr": plan["lr"],
        "test-time augmentation": predictor.tta, "stopped by time limit": info["stopped_by_time_limit"],
        "seconds": info["fit_seconds"],
    }
    sections: list[tuple[str, str]] = []
    if info["notes"]:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in info["notes"]) + "</ul>"))
    aug = info.get("augment", {})
    sections.append(("Augmentation (training batches)", table_html([{k: str(v) for k, v in aug.items()}])))

    def names(y: torch.Tensor) -> list[str]:
        if predictor.task == "multilabel":
            return ["|".join(c for c, on in zip(classes, row) if on >= 0.5) or "(none)" for row in y.tolist()]
        return [classes[int(i)] for i in y.tolist()]

    # A sample of training images (the decoded pixels the model sees, before augmentation).
    n = len(train_labels)
    shown, pick = pictures(train_images, train_frame, np.linspace(0, n - 1, min(SAMPLES, n)).round().astype(int))
    sections.append(("Sample training images", image_grid_html(
        shown, [html.escape(s) for s in names(train_labels[torch.from_numpy(pick)])])))

    which = "test" if info["test_rows"] else "validation"
    probs = eval_probs.float()
    if predictor.task == "classify":
        k = len(classes)
        codes = eval_labels.long().numpy()
        pred = probs.argmax(dim=1).numpy()
        matrix = np.bincount(codes * k + pred, minlength=k * k).reshape(k, k).tolist()
        sections.append((f"Confusion matrix ({which} images)", confusion_matrix_html(classes, matrix)))
        p_true = probs[torch.arange(len(codes)), torch.from_numpy(codes)].numpy()
        order = np.argsort(p_true, kind="stable")[:WORST]
        def caption(i: int) -> str:
            return (f"true <b>{html.escape(classes[codes[i]])}</b><br>predicted {html.escape(classes[pred[i]])}"
                    f"<br>p(true) {p_true[i]:.3f}")
    else:
        y = eval_labels.float()
        per_image = -(y * probs.clamp(1e-7).log() + (1 - y) * (1 - probs).clamp(1e-7).log()).mean(dim=1)
        order = np.argsort(-per_image.numpy(), kind="stable")[:WORST]
        true_names, pred_names = names(eval_labels), names(probs)

        def caption(i: int) -> str:
            return (f"true <b>{html.escape(true_names[i])}</b><br>predicted {html.escape(pred_names[i])}"
                    f"<br>loss {float(per_image[i]):.3f}")
    shown, order = pictures(eval_images, eval_frame, order)
    captions = [caption(i) for i in order]
    sections.append((f"Worst-predicted {which} images", image_grid_html(shown, captions)))
    files = [{"file": str(eval_frame[image_column].iloc[i]), "caption": c.replace("<br>", "; ").replace("<b>", "")
              .replace("</b>", "")} for i, c in zip(order, captions)]
    sections.append((f"Worst-predicted {which} files", table_html(files)))
    skipped = info.get("skipped", [])
    if skipped:
        sections.append((f"Skipped files ({len(skipped)})", table_html(skipped[:50])))
    return write_report(path, title=f"deepfit: images from {info['source']}", summary=summary,
                        metrics=predictor.metrics, history=history, sections=sections)
