"""Reading a text corpus: a UTF-8 file, a folder of ``.txt`` files, a table's text column, or strings.

Used by the language-model task (``deepfit.tasks.lm``): :func:`read_corpus` gives the whole text
(documents joined by line breaks) and where it came from; :func:`encode_text` tokenizes it line
by line in parallel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.data.loader import BatchLoader
from deepfit.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from deepfit.features.tokenizer import Tokenizer

__all__ = ["read_corpus", "encode_text", "corpus_lines", "TABLE_SUFFIXES", "WindowBatches", "valid_windows", "window_seed"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".csv.gz", ".tsv.gz")


def _decode_utf8(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start : e.start + 4]
        raise DataError(
            f"{where} is not valid UTF-8: line {line}, byte offset {e.start} holds {bad!r}. Convert it to UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {where} > fixed.txt) and train on the converted file"
        ) from e
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _table_text(frame: Any, column: str | None, source: str) -> str:
    from deepfit.data.table import find_column

    columns = [str(c) for c in frame.columns]
    if column is not None:
        name = find_column(frame, column, role="text column", source=source)
    elif len(columns) == 1:
        name = columns[0]
    elif "text" in columns:
        name = "text"
    else:
        raise DataError(f"{source} has {len(columns)} columns ({', '.join(columns[:10])}); say which holds the "
                        "text: text_column='...' (CLI: --target COLUMN)")
    values = frame[name].dropna().astype(str)
    values = values[values != ""]  # CSV cells without text
    return "".join(v.replace("\r\n", "\n") + "\n" for v in values)


def read_corpus(data: Any, *, text_column: str | None = None) -> tuple[str, str]:
    """The text of a corpus and a name for it in messages: ``(text, source)``.

    Args:
        data: a UTF-8 text file (any extension but the table ones), a folder (every ``.txt``
            file below it, in path order, each ending with a line break), a CSV/TSV/Parquet
            file or a pandas DataFrame (one row = one document, from ``text_column``, or the
            column ``text``, or the only column), or a list of strings (documents).
        text_column: for tables: the column with the text.

    Raises:
        DataError: missing path, no ``.txt`` in a folder, bytes that are not UTF-8 (the line and
            byte offset are named), or an empty corpus.

    Example:
        >>> read_corpus(["first document", "second"])
        ('first document\\nsecond\\n', 'list of 2 texts')
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        source = "DataFrame"
        text = _table_text(data, text_column, source)
    elif isinstance(data, (list, tuple)):
        if not all(isinstance(t, str) for t in data):
            raise DataError("a list corpus must hold strings (one document each)")
        source = f"list of {len(data)} texts"
        text = "".join(t.replace("\r\n", "\n") + ("" if t.endswith("\n") else "\n") for t in data)
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        source = str(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise DataError(f"{path} is a folder without .txt files; put the corpus in .txt files (UTF-8)")
            parts = [_decode_utf8(p.read_bytes(), str(p)) for p in files]
            text = "".join(t if t.endswith("\n") or not t else t + "\n" for t in parts)
            source = f"{path} ({len(files)} .txt files)"
        elif path.is_file():
            if path.name.lower().endswith(TABLE_SUFFIXES):
                from deepfit.data.sources import read_table

                text = _table_text(read_table(path), text_column, source)
            else:
                text = _decode_utf8(path.read_bytes(), source)
        else:
            raise DataError(f"{path} does not exist; pass a UTF-8 text file, a folder of .txt files or a table")
    else:
        raise DataError(f"cannot read a corpus from a {type(data).__name__}; pass a path, a folder, a DataFrame "
                        "or a list of strings")
    if not text.strip():
        raise DataError(f"{source} is empty (no text to learn from)")
    return text, source


def corpus_lines(text: str) -> list[str]:
    """``text`` cut after each line break (the pieces join back to ``text``)."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def encode_text(tok: Tokenizer, text: str) -> torch.Tensor:
    """All token ids of ``text`` as one int64 tensor (lines are encoded in parallel)."""
    import torch

    pieces = corpus_lines(text)
    ids = [i for enc in tok.encode_batch(pieces) for i in enc] if pieces else []
    return torch.tensor(ids, dtype=torch.long)


# ----------------------------------------------------------------------------- windows of a token stream


def window_seed(seed: int, epoch: int) -> int:
    """The generator seed of an "epoch" of random windows (fixed: runs and resumes depend on it)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 4_242) % (2**63 - 1)


class WindowBatches(BatchLoader):
    """A loader of random windows of a token stream: batch ``i`` of "epoch" ``e`` depends only on
    ``(seed, e, i)``, so a resumed run draws the same windows. Under torch.distributed each rank
    takes its own ``batch_size`` rows of every global batch of ``world_size x batch_size``.

    Example:
        >>> import torch
        >>> x, y = next(iter(WindowBatches(torch.arange(100), context=8, batch_size=4, steps=2, seed=0).iterate(0)))
        >>> x.shape, bool((y[:, :-1] == x[:, 1:]).all())
        (torch.Size([4, 8]), True)
    """

    def __init__(self, tokens: torch.Tensor, *, context: int, batch_size: int, steps: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        import torch

        self.tokens, self.context, self.batch_size, self.steps = tokens, context, batch_size, steps
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.offsets = torch.arange(context + 1)

    def num_batches(self) -> int:
        return self.steps

    def num_samples(self) -> int:
        return self.steps * self.batch_size

    def iterate(self, epoch: int, start: int = 0):  # noqa: ANN201 - a generator of (inputs, targets)
        import torch

        b, T = self.batch_size, self.context
        g = torch.Generator().manual_seed(window_seed(self.seed, epoch))
        starts = torch.randint(0, len(self.tokens) - T, (self.steps, self.world_size * b), generator=g)
        for i in range(start, self.steps):
            s = starts[i, self.rank * b : (self.rank + 1) * b]
            w = self.tokens[s[:, None] + self.offsets]  # (B, T+1)
            yield w[:, :-1], w[:, 1:]  # inputs (B, T), next tokens (B, T)


def valid_windows(tokens: torch.Tensor, context: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``limit`` evenly spaced, non-overlapping windows of ``tokens``: (inputs, next tokens)."""
    import torch

    T = min(context, len(tokens) - 1)
    count = (len(tokens) - 1) // T
    starts = torch.linspace(0, count - 1, min(limit, count)).round().long().unique() * T
    w = tokens[starts[:, None] + torch.arange(T + 1)]  # (N, T+1)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()
