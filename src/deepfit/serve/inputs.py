"""What each kind of model takes over HTTP: request checks, the input schema, one batched predict.

One :class:`Handler` per artifact kind. A handler checks ONE request on its own
(:meth:`Handler.prepare_json` / ``prepare_csv`` / ``prepare_uploads``), so that a bad value is
that request's 4xx and never reaches a batch; the batcher then hands the prepared requests of
many callers to :meth:`Handler.run_batch`, which coerces, encodes and predicts them all at once
(one pandas pass, one forward pass) and returns each caller's predictions in its own order.

Every prediction is ``{"prediction": ..., "probabilities": {class: p}, "warnings": [...]}``
(no ``probabilities`` for regression). Probabilities are float32, written with the shortest
decimal that reads back as that float32 — the text ``deepfit predict`` writes to its CSV.

A client never names a file on the server: an image column takes uploaded bytes only, and a
path sent in its place is refused (:data:`PATH_REFUSED`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfit.errors import DeepfitError

__all__ = ["Limits", "RequestError", "Prepared", "Handler", "TableHandler", "ImageHandler", "ArraysHandler",
           "LMHandler", "handler_for", "PATH_REFUSED"]

PATH_REFUSED = ("the server never opens a file named by a client; upload the image's bytes instead "
                "(multipart/form-data, field 'image')")


@dataclass(frozen=True)
class Limits:
    """What one request may hold; a request over a limit gets 413 naming it.

    Attributes:
        max_body_bytes: bytes of one request body (``--max-body-bytes``).
        max_rows: rows (tables, arrays) or images in one request (``--max-rows``).
        max_image_bytes: bytes of one uploaded image.
        max_image_pixels: width x height of one uploaded image (checked from its header, before
            any pixel is decoded: a decompression bomb is refused at no cost).
        max_tokens: tokens one ``/v1/generate`` request may ask for.
    """

    max_body_bytes: int = 10 * 2**20
    max_rows: int = 10_000
    max_image_bytes: int = 10 * 2**20
    max_image_pixels: int = 40_000_000
    max_tokens: int = 2048

    def __post_init__(self) -> None:
        from deepfit.errors import ConfigError

        for name in ("max_body_bytes", "max_rows", "max_image_bytes", "max_image_pixels", "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


class RequestError(DeepfitError):
    """A request the server cannot answer as sent: the HTTP status, the field at fault (e.g.
    ``rows[2].age``) and what was expected there. Answered as JSON, the server goes on."""

    def __init__(self, status: int, message: str, *, field: str | None = None, expected: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.expected = status, message, field, expected

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field, "expected": self.expected}


@dataclass
class Prepared:
    """One checked request: ``rows`` it holds and what :meth:`Handler.run_batch` needs of it."""

    rows: int
    payload: Any
    extra: dict[str, Any] = field(default_factory=dict)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _probabilities(probs: np.ndarray, classes: list[str]) -> list[dict[str, float]]:
    """Rows of float32 probabilities as {class: p}, each p the shortest decimal of its float32."""
    text = np.asarray(probs, dtype=np.float32).astype(str)
    return [{c: float(t) for c, t in zip(classes, row)} for row in text.tolist()]


class Handler:
    """The requests one kind of model takes; see the module docstring."""

    kind = ""

    def __init__(self, predictor: Any, limits: Limits) -> None:
        self.predictor, self.limits = predictor, limits

    def schema(self) -> dict[str, Any]:
        """The ``input`` part of ``GET /v1/model``."""
        raise NotImplementedError

    def classes(self) -> list[str] | None:
        return None

    def _not_taken(self, what: str) -> RequestError:
        return RequestError(415, f"a {self.predictor.kind} model does not take {what}", field="body",
                            expected=self.takes)

    takes = ""

    def prepare_json(self, body: Any) -> Prepared:
        raise self._not_taken("JSON rows")

    def prepare_csv(self, raw: bytes) -> Prepared:
        raise self._not_taken("a CSV body")

    def prepare_uploads(self, files: list[tuple[str, bytes]], fields: dict[str, str]) -> Prepared:
        raise self._not_taken("uploads")

    def run_batch(self, payloads: list[Prepared]) -> list[list[dict[str, Any]] | RequestError]:
        """Predictions for every prepared request, in order (a request whose rows turn out bad
        here gets its RequestError; the others their predictions)."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """One prediction on a blank input: a model that cannot answer fails at start-up."""

    # ------------------------------------------------------------------ shared checks

    def _rows_of(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or "rows" not in body:
            raise RequestError(422, "the JSON body must be an object with a 'rows' list", field="rows",
                               expected='{"rows": [...]}')
        extra = sorted(set(body) - {"rows"})
        if extra:
            raise RequestError(422, f"unknown field(s) {', '.join(map(repr, extra))} in the body; only 'rows' is read",
                               field=extra[0], expected='{"rows": [...]}')
        rows = body["rows"]
        if not isinstance(rows, list):
            raise RequestError(422, f"'rows' must be a list, got {type(rows).__name__}", field="rows",
                               expected="a list")
        self._check_count(len(rows), "rows")
        return rows

    def _check_count(self, n: int, what: str) -> None:
        if n == 0:
            raise RequestError(422, f"'{what}' is empty: send at least one", field=what, expected="at least one")
        if n > self.limits.max_rows:
            raise RequestError(413, f"{n} {what} in one request; the limit is {self.limits.max_rows} (--max-rows): "
                               "split the request", field=what, expected=f"at most {self.limits.max_rows}")


# --------------------------------------------------------------------------- table rows


class RowChecker:
    """Checks raw rows against a table preprocessor (value types per column kind, nothing
    missing, nothing unknown) in plain Python, then coerces and encodes many requests' rows
    together.

    Values: numbers as JSON numbers or numeric strings (``null`` / "" / "NA" = missing; NaN and
    infinities refused); categories, binary and text columns as strings (numbers and booleans
    read as their text); dates as strings in the training format; sequences as lists of numbers
    or their text. ``allowed`` names columns that may be present and are ignored (the target).
    """

    def __init__(self, preprocessor: Any, *, allowed: tuple[str, ...] = (), image_column: str | None = None) -> None:
        self.pre = preprocessor
        self.columns: dict[str, str] = dict(preprocessor.columns)
        self.allowed = set(allowed) - set(self.columns)
        self.image_column = image_column
        self.ignored = set(getattr(preprocessor, "ignored", []))

    def schema(self) -> list[dict[str, Any]]:
        from deepfit.features.binary import BinaryFeature
        from deepfit.features.category import CategoryFeature
        from deepfit.features.number import NumberFeature

        out = []
        for name, kind in self.columns.items():
            f = self.pre.features[name]
            entry: dict[str, Any] = {"name": name, "type": kind}
            if isinstance(f, CategoryFeature):
                entry["levels"] = list(f.vocabulary)
            elif isinstance(f, BinaryFeature):
                entry["levels"] = list(f.values)
            elif isinstance(f, NumberFeature):
                entry["min"], entry["max"] = f.min, f.max
            if kind == "date" and self.pre.date_formats.get(name):
                entry["format"] = self.pre.date_formats[name]
            out.append(entry)
        return out

    def check(self, rows: list[Any], where: str = "rows") -> list[dict[str, Any]]:
        """The rows as dicts of the model's columns; RequestError naming the first bad field."""
        from deepfit.data.table import MISSING_TOKENS

        names = list(self.columns)
        known = set(names) | self.allowed
        out = []
        for i, row in enumerate(rows):
            at = f"{where}[{i}]"
            if not isinstance(row, dict):
                raise RequestError(422, f"{at} must be an object {{column: value}}, got {type(row).__name__}",
                                   field=at, expected="an object mapping column names to values")
            if self.image_column is not None and self.image_column in row:
                raise RequestError(400, f"{at}.{self.image_column}: {PATH_REFUSED}", field=f"{at}.{self.image_column}",
                                   expected="an uploaded image")
            extra = [k for k in row if k not in known]
            if extra:
                hint = (f"'{extra[0]}' is an image column this table model does not use; leave it out (the server "
                        "never opens a file named by a client)" if extra[0] in self.ignored else
                        f"the model takes {', '.join(map(repr, names))}")
                raise RequestError(422, f"{at} holds unknown column(s) {', '.join(map(repr, extra))}; {hint}",
                                   field=f"{at}.{extra[0]}", expected="only the model's input columns")
            missing = [c for c in names if c not in row]
            if missing:
                raise RequestError(422, f"{at} lacks column(s) {', '.join(map(repr, missing))}; send null for a "
                                   "missing value", field=f"{at}.{missing[0]}", expected="every input column")
            for name in names:
                value = row[name]
                if value is None:
                    continue
                kind = self.columns[name]
                bad = _value_problem(value, kind, MISSING_TOKENS)
                if bad:
                    raise RequestError(422, f"{at}.{name}: {bad} (got {value!r:.60})", field=f"{at}.{name}",
                                       expected=_EXPECTED[kind])
            out.append({c: row[c] for c in names})
        if any(kind in ("date", "sequence") for kind in self.columns.values()):
            self._check_parsed(out, where)
        return out

    def _check_parsed(self, rows: list[dict[str, Any]], where: str) -> None:
        """Dates and sequences: parse this request's values as the batch will (pandas)."""
        import pandas as pd

        from deepfit.data.table import coerce_column, parse_sequence

        for name, kind in self.columns.items():
            if kind == "sequence":
                for i, r in enumerate(rows):
                    v = r[name]
                    if v is not None and not _is_missing_token(v):
                        arr = parse_sequence(v)
                        if arr is None or not np.isfinite(arr).all():
                            raise RequestError(422, f"{where}[{i}].{name}: not a sequence of finite numbers "
                                               f"(got {v!r:.60})", field=f"{where}[{i}].{name}",
                                               expected=_EXPECTED[kind])
            elif kind == "date":
                raw = pd.Series([r[name] for r in rows], dtype=object)
                coerced = coerce_column(raw, "date", date_format=self.pre.date_formats.get(name))
                present = np.array([v is not None and not _is_missing_token(v) for v in raw], dtype=bool)
                bad = np.flatnonzero(present & coerced.isna().to_numpy())
                if len(bad):
                    i = int(bad[0])
                    fmt = self.pre.date_formats.get(name)
                    raise RequestError(422, f"{where}[{i}].{name}: {raw.iloc[i]!r:.60} is not a date"
                                       + (f" in the format {fmt!r}" if fmt else ""), field=f"{where}[{i}].{name}",
                                       expected=f"a date like the training data's{f' ({fmt})' if fmt else ''}")

    def coerce(self, rows: list[dict[str, Any]]) -> tuple[Any, list[list[str]], np.ndarray]:
        """(coerced DataFrame of all rows, each row's warnings, rows whose numbers did not parse)."""
        import pandas as pd

        from deepfit.features.binary import BinaryFeature
        from deepfit.features.category import CategoryFeature
        from deepfit.features.number import NumberFeature

        raw = pd.DataFrame({c: _column(c, kind, rows) for c, kind in self.columns.items()})
        coerced = self.pre.check_input(raw, source="the request") if len(self.columns) else raw
        notes: list[list[str]] = [[] for _ in rows]
        bad = np.zeros(len(rows), dtype=bool)
        for name, f in self.pre.features.items():
            values = coerced[name]
            present = values.notna().to_numpy()
            if isinstance(f, NumberFeature):
                column = raw[name]
                if column.dtype == np.float64:  # the typed path (_column): a null is NaN, nothing to parse
                    given = column.notna().to_numpy()
                else:
                    given = np.array([v is not None and not _is_missing_token(v) for v in column], dtype=bool)
                bad |= given & ~present  # a safety net: check() lets only parseable numbers through
                for i in np.flatnonzero(f.out_of_range(values)):
                    notes[i].append(f"'{name}': {values.iloc[i]:.6g} is outside the training range "
                                    f"[{f.min:.6g}, {f.max:.6g}]; served as the nearest training extreme")
            elif isinstance(f, (CategoryFeature, BinaryFeature)):
                if isinstance(f, CategoryFeature):
                    unseen = present & (f.encode(values)["cat"][:, 0] == 0)
                else:
                    unseen = present & ~values.astype(str).isin(f.values).to_numpy()
                for i in np.flatnonzero(unseen):
                    notes[i].append(f"'{name}': {values.iloc[i]!r} was not seen in training; served as unknown")
        return coerced, notes, bad


_EXPECTED = {
    "number": "a finite number, a numeric string, or null",
    "category": "a string (or a number), or null",
    "binary": "one of the column's two values as a string, or null",
    "text": "a string, or null",
    "date": "a date string, or null",
    "sequence": "a list of numbers (or their text, e.g. \"0.1 0.2\"), or null",
}


def _column(name: str, kind: str, rows: list[dict[str, Any]]) -> Any:
    """One column of checked rows for ``check_input``: float64 when a number column holds only
    JSON numbers and nulls (the typed path: no text to parse, ~2x faster for a one-row batch),
    else the values as objects (numeric strings parse as a CSV's do)."""
    import pandas as pd

    values = [r[name] for r in rows]
    if kind == "number" and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                                for v in values):
        return pd.Series(np.array([np.nan if v is None else v for v in values], dtype=np.float64))
    return pd.Series(values, dtype=object)


def _is_missing_token(value: Any) -> bool:
    from deepfit.data.table import MISSING_TOKENS

    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def _value_problem(value: Any, kind: str, missing: frozenset[str]) -> str:
    """Why ``value`` (not None) cannot be a ``kind`` value; "" if it can."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and infinities are not values; send null for a missing value"
    if kind == "number":
        if isinstance(value, bool):
            return "a boolean is not a number"
        if isinstance(value, (int, float)):
            return ""
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in missing:
                return ""
            if "_" in text:
                return "not a number"
            try:
                x = float(text)
            except ValueError:
                return "not a number"
            return "" if math.isfinite(x) else "NaN and infinities are not values; send null for a missing value"
        return f"a {type(value).__name__} is not a number"
    if kind == "sequence":
        return "" if isinstance(value, (str, list, int, float)) and not isinstance(value, bool) else \
            f"a {type(value).__name__} is not a sequence"
    if kind == "date":
        return "" if isinstance(value, str) else f"a {type(value).__name__} is not a date string"
    if isinstance(value, (str, int, float, bool)):
        return ""
    return f"a {type(value).__name__} is not a {kind} value"


def _table_from_csv(raw: bytes) -> list[dict[str, Any]]:
    from deepfit.data.sources import read_text_table

    try:
        frame = read_text_table(raw, name="the CSV body")
    except DeepfitError as e:
        raise RequestError(400, str(e), field="body", expected="CSV text: a header line and data rows") from e
    return frame.to_dict("records")


class TableHandler(Handler):
    """A table model: JSON rows or a CSV body."""

    kind = "table"
    takes = 'JSON {"rows": [{column: value, ...}]} or a CSV body (Content-Type: text/csv)'

    def __init__(self, predictor: Any, limits: Limits) -> None:
        super().__init__(predictor, limits)
        self.rows = RowChecker(predictor.preprocessor, allowed=(predictor.target_name,))

    def schema(self) -> dict[str, Any]:
        return {"columns": self.rows.schema(), "target": self.predictor.target_name,
                "ignored": sorted(self.rows.ignored), "accepts": ["application/json", "text/csv"]}

    def classes(self) -> list[str] | None:
        return [str(c) for c in self.predictor.classes] if self.predictor.task == "classify" else None

    def prepare_json(self, body: Any) -> Prepared:
        rows = self.rows.check(self._rows_of(body))
        return Prepared(len(rows), rows)

    def prepare_csv(self, raw: bytes) -> Prepared:
        records = _table_from_csv(raw)
        self._check_count(len(records), "rows")
        rows = self.rows.check(records)
        return Prepared(len(rows), rows)

    def prepare_uploads(self, files: list[tuple[str, bytes]], fields: dict[str, str]) -> Prepared:
        if len(files) != 1 or fields:
            raise RequestError(422, "a table model takes one uploaded CSV file (or a CSV or JSON body)",
                               field="file", expected="one CSV file")
        return self.prepare_csv(files[0][1])

    def run_batch(self, payloads: list[Prepared]) -> list[list[dict[str, Any]] | RequestError]:
        p = self.predictor
        rows = [r for prepared in payloads for r in prepared.payload]
        coerced, notes, bad = self.rows.coerce(rows)
        out, labels = p.predict_checked(coerced)  # what predict_frame computes, without re-checking the rows
        classes = self.classes()
        probs = _probabilities(out, classes) if classes is not None else None
        results: list[list[dict[str, Any]] | RequestError] = []
        start = 0
        for prepared in payloads:
            stop = start + prepared.rows
            wrong = np.flatnonzero(bad[start:stop])
            if len(wrong):
                results.append(RequestError(422, f"rows[{int(wrong[0])}] holds a number that does not parse",
                                            field=f"rows[{int(wrong[0])}]", expected=_EXPECTED["number"]))
            else:
                preds = []
                for i in range(start, stop):
                    item: dict[str, Any] = {"prediction": _jsonable(labels[i])}
                    if probs is not None:
                        item["probabilities"] = probs[i]
                    item["warnings"] = notes[i]
                    preds.append(item)
                results.append(preds)
            start = stop
        return results

    def warm_up(self) -> None:
        blank = [{c: None for c in self.rows.columns}]
        out = self.run_batch([Prepared(1, blank)])[0]
        if isinstance(out, RequestError) or not _finite_prediction(out[0]):
            from deepfit.artifact import ArtifactError

            raise ArtifactError(f"the model's answer to a blank row is not a finite prediction: {out}")


def _finite_prediction(item: dict[str, Any]) -> bool:
    values = list(item.get("probabilities", {}).values())
    if isinstance(item["prediction"], float):
        values.append(item["prediction"])
    return all(math.isfinite(v) for v in values)


# --------------------------------------------------------------------------- images


class ImageHandler(Handler):
    """An image model: multipart uploads (field ``image``, one or more files); a model that also
    reads table columns takes them as form fields (one image) or a ``rows`` field holding a JSON
    list with one row per image."""

    kind = "image"
    takes = "multipart/form-data with one or more files in the field 'image'"

    def __init__(self, predictor: Any, limits: Limits) -> None:
        super().__init__(predictor, limits)
        pre = predictor.preprocessor
        self.rows = (RowChecker(pre, allowed=(predictor.target_name,), image_column=predictor.image_column)
                     if pre is not None else None)

    def schema(self) -> dict[str, Any]:
        f = self.predictor.feature
        return {"image": {"column": self.predictor.image_column, "field": "image", "size": int(f.size),
                          "crop": f.crop, "max_bytes": self.limits.max_image_bytes,
                          "max_pixels": self.limits.max_image_pixels},
                "columns": self.rows.schema() if self.rows is not None else [],
                "accepts": ["multipart/form-data"]}

    def classes(self) -> list[str] | None:
        return [str(c) for c in self.predictor.classes]

    def prepare_json(self, body: Any) -> Prepared:
        rows = body.get("rows") if isinstance(body, dict) else None
        col = self.predictor.image_column
        if isinstance(rows, list):
            for i, row in enumerate(rows):
                if isinstance(row, dict) and any(k in row for k in (col, "image", "path")):
                    key = next(k for k in (col, "image", "path") if k in row)
                    raise RequestError(400, f"rows[{i}].{key}: {PATH_REFUSED}", field=f"rows[{i}].{key}",
                                       expected="an uploaded image")
        raise self._not_taken("JSON rows (images come as uploads)")

    def prepare_uploads(self, files: list[tuple[str, bytes]], fields: dict[str, str]) -> Prepared:
        import json

        self._check_count(len(files), "image")
        images = [self._decode(i, data) for i, (_, data) in enumerate(files)]
        rows = None
        if self.rows is not None:
            if "rows" in fields:
                try:
                    listed = json.loads(fields["rows"])
                except ValueError as e:
                    raise RequestError(400, f"the 'rows' field is not valid JSON: {e}", field="rows",
                                       expected="a JSON list of rows, one per image") from e
                if not isinstance(listed, list) or len(listed) != len(files):
                    raise RequestError(422, f"'rows' must be a JSON list of {len(files)} row(s), one per image",
                                       field="rows", expected="one row per uploaded image")
            elif len(files) == 1:
                listed = [dict(fields)]
            else:
                raise RequestError(422, "several images need a 'rows' field: a JSON list with one row per image",
                                   field="rows", expected="a JSON list of rows, one per image")
            rows = self.rows.check(listed)
        elif set(fields) - {"rows"}:
            extra = sorted(set(fields) - {"rows"})[0]
            if extra == self.predictor.image_column:
                raise RequestError(400, f"{extra}: {PATH_REFUSED}", field=extra, expected="an uploaded image")
            raise RequestError(422, f"unknown form field {extra!r}; this image model reads only the uploads",
                               field=extra, expected="files in the field 'image'")
        return Prepared(len(files), (np.stack(images), rows))

    def _decode(self, i: int, data: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        from deepfit.data.images.decode import ImageError, center_box, decode_bytes_tensor

        at, lim = f"image[{i}]", self.limits
        if len(data) > lim.max_image_bytes:
            raise RequestError(413, f"{at} is {len(data)} bytes; the limit is {lim.max_image_bytes} per image",
                               field=at, expected=f"at most {lim.max_image_bytes} bytes")
        try:
            with Image.open(io.BytesIO(data)) as im:  # the header only
                w, h = im.size
        except Image.DecompressionBombError as e:
            raise RequestError(413, f"{at} is refused as a decompression bomb: {e}", field=at,
                               expected=f"at most {lim.max_image_pixels} pixels") from e
        except UnidentifiedImageError as e:
            raise RequestError(422, f"{at} is not an image (PNG, JPEG, GIF, BMP, WebP, TIFF)", field=at,
                               expected="an image file") from e
        except Exception as e:  # noqa: BLE001 - Pillow plugins raise many types on malformed headers
            raise RequestError(422, f"{at} cannot be read as an image: {e}", field=at, expected="an image file") from e
        if w * h > lim.max_image_pixels:
            raise RequestError(413, f"{at} is {w}x{h} = {w * h} pixels; the limit is {lim.max_image_pixels} pixels",
                               field=at, expected=f"at most {lim.max_image_pixels} pixels")
        f = self.predictor.feature
        try:
            return decode_bytes_tensor(data, int(f.size), center_box(f.crop), name=at).numpy()
        except ImageError as e:
            raise RequestError(422, f"{at}: {e.reason}", field=at, expected="an image file") from e

    def run_batch(self, payloads: list[Prepared]) -> list[list[dict[str, Any]] | RequestError]:
        import torch

        p = self.predictor
        images = torch.from_numpy(np.concatenate([prepared.payload[0] for prepared in payloads]))
        inputs: tuple[Any, ...] = (images,)
        notes: list[list[str]] = [[] for _ in range(len(images))]
        bad = np.zeros(len(images), dtype=bool)
        if self.rows is not None:
            rows = [r for prepared in payloads for r in prepared.payload[1]]
            coerced, notes, bad = self.rows.coerce(rows)
            inputs += tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in p.preprocessor.transform(coerced))
        probs = p.proba_tensors(inputs).numpy()
        labels = p.target.decode_multi(probs) if p.task == "multilabel" else p.target.decode(probs.argmax(1))
        shown = _probabilities(probs, self.classes())
        results: list[list[dict[str, Any]] | RequestError] = []
        start = 0
        for prepared in payloads:
            stop = start + prepared.rows
            if bad[start:stop].any():
                results.append(RequestError(422, "a row holds a number that does not parse", field="rows",
                                            expected=_EXPECTED["number"]))
            else:
                results.append([{"prediction": _jsonable(labels[i]), "probabilities": shown[i], "warnings": notes[i]}
                                for i in range(start, stop)])
            start = stop
        return results

    def warm_up(self) -> None:
        size = int(self.predictor.feature.size)
        rows = [{c: None for c in self.rows.columns}] if self.rows is not None else None
        out = self.run_batch([Prepared(1, (np.zeros((1, 3, size, size), np.uint8), rows))])[0]
        if isinstance(out, RequestError) or not _finite_prediction(out[0]):
            from deepfit.artifact import ArtifactError

            raise ArtifactError(f"the model's answer to a blank image is not a finite prediction: {out}")


# --------------------------------------------------------------------------- arrays


class ArraysHandler(Handler):
    """A bundled-dataset model (digits, signals): JSON rows, each a list of numbers (flat, or
    nested in the input shape), or a CSV body of numeric columns."""

    kind = "arrays"
    takes = 'JSON {"rows": [[number, ...], ...]} or a CSV body of numeric columns'

    def schema(self) -> dict[str, Any]:
        shape = list(self.predictor.input_shape)
        return {"shape": shape, "numbers": int(np.prod(shape)), "dataset": self.predictor.data,
                "accepts": ["application/json", "text/csv"]}

    def classes(self) -> list[str] | None:
        return [str(c) for c in self.predictor.classes]

    def _check(self, rows: list[Any]) -> np.ndarray:
        width = int(np.prod(self.predictor.input_shape))
        out = np.empty((len(rows), width), dtype=np.float32)
        for i, row in enumerate(rows):
            try:
                a = np.asarray(row, dtype=np.float64)
            except (TypeError, ValueError):
                raise RequestError(422, f"rows[{i}] is not an array of numbers", field=f"rows[{i}]",
                                   expected=f"{width} numbers (shape {self.predictor.input_shape})") from None
            if isinstance(row, (str, dict)) or a.dtype.kind not in "fiu" or any(isinstance(v, bool) for v in np.ravel(
                    np.asarray(row, dtype=object))):
                raise RequestError(422, f"rows[{i}] is not an array of numbers", field=f"rows[{i}]",
                                   expected=f"{width} numbers (shape {self.predictor.input_shape})")
            if a.size != width:
                raise RequestError(422, f"rows[{i}] holds {a.size} numbers (shape {list(a.shape)}); the model takes "
                                   f"{width} (shape {self.predictor.input_shape})", field=f"rows[{i}]",
                                   expected=f"{width} numbers")
            if not np.isfinite(a).all():
                j = int(np.flatnonzero(~np.isfinite(a.ravel()))[0])
                raise RequestError(422, f"rows[{i}][{j}] is not a finite number", field=f"rows[{i}][{j}]",
                                   expected="finite numbers")
            out[i] = a.ravel()
        return out

    def prepare_json(self, body: Any) -> Prepared:
        x = self._check(self._rows_of(body))
        return Prepared(len(x), x)

    def prepare_csv(self, raw: bytes) -> Prepared:
        records = _table_from_csv(raw)
        self._check_count(len(records), "rows")
        rows = []
        for i, r in enumerate(records):
            try:
                rows.append([float(v) for k, v in r.items() if k not in ("label", "y", "target")])
            except ValueError:
                raise RequestError(422, f"rows[{i}] holds a value that is not a number", field=f"rows[{i}]",
                                   expected="numeric columns") from None
        x = self._check(rows)
        return Prepared(len(x), x)

    def run_batch(self, payloads: list[Prepared]) -> list[list[dict[str, Any]] | RequestError]:
        probs = self.predictor.predict_proba(np.concatenate([p.payload for p in payloads]))
        classes = self.classes()
        labels = np.asarray(classes, dtype=object)[probs.argmax(1)]
        shown = _probabilities(probs, classes)
        results: list[list[dict[str, Any]] | RequestError] = []
        start = 0
        for prepared in payloads:
            stop = start + prepared.rows
            results.append([{"prediction": labels[i], "probabilities": shown[i], "warnings": []}
                            for i in range(start, stop)])
            start = stop
        return results

    def warm_up(self) -> None:
        width = int(np.prod(self.predictor.input_shape))
        out = self.run_batch([Prepared(1, np.zeros((1, width), np.float32))])[0]
        if isinstance(out, RequestError) or not _finite_prediction(out[0]):
            from deepfit.artifact import ArtifactError

            raise ArtifactError(f"the model's answer to a blank input is not a finite prediction: {out}")


# --------------------------------------------------------------------------- language models


class LMHandler(Handler):
    """A language model: ``POST /v1/generate`` only."""

    kind = "lm"
    takes = "POST /v1/generate with {\"prompt\": ...}"

    def schema(self) -> dict[str, Any]:
        tok = self.predictor.tokenizer
        return {"prompt": {"tokenizer": tok.kind, "vocab_size": tok.vocab_size, "context": self.predictor.context,
                           "max_tokens": self.limits.max_tokens,
                           "characters": "any text" if tok.kind != "char" else "the characters seen in training"},
                "accepts": ["application/json"]}

    def _not_taken(self, what: str) -> RequestError:
        return RequestError(400, "this is a language model: it generates text rather than predicting rows; "
                            "POST /v1/generate with {\"prompt\": ...}", field="body", expected=self.takes)

    def warm_up(self) -> None:
        self.predictor.generate("", max_tokens=1, seed=0)


HANDLERS: dict[str, type[Handler]] = {"table": TableHandler, "image": ImageHandler, "arrays": ArraysHandler,
                                      "lm": LMHandler}


def handler_for(predictor: Any, limits: Limits) -> Handler:
    """The handler of the predictor's kind."""
    from deepfit.errors import ConfigError

    kind = getattr(predictor, "kind", None)
    if kind not in HANDLERS:
        raise ConfigError(f"cannot serve a {kind!r} model; the server takes {', '.join(HANDLERS)} models")
    return HANDLERS[kind](predictor, limits)
