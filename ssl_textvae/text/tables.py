"""CSV and JSON Lines tables: one text, and optionally one label, a row, found by column name.

The input layer's second file format beside ``label<TAB>text`` lines
(:func:`ssl_textvae.read_labeled_file`): a label that is missing, empty, null or -1 marks
an unlabeled row (label "-1"), as there; every error names the file, its line and the
column. CSV files have a header line; JSON Lines files hold one JSON object a line.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
from typing import List, Tuple

from .inputs import UNLABELED, decoding_error, read_lines

TABLE_SUFFIXES = (".csv", ".jsonl")


def is_table(path) -> bool:
    """Whether ``path`` names a CSV or JSON Lines file (by its extension)."""
    return os.fspath(path).lower().endswith(TABLE_SUFFIXES)


def read_rows(path, encoding="utf-8") -> List[Tuple[int, dict]]:
    """``(line number, row)`` of every row of a CSV or JSON Lines file; blank JSON lines
    are skipped. A file that is not in ``encoding`` raises the ``ValueError`` of
    :func:`ssl_textvae.read_labeled_file`."""
    path = os.fspath(path)
    if not is_table(path):
        raise ValueError(f"Cannot read {path!r} as a table: expected a .csv or .jsonl file.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}.")
    if path.lower().endswith(".jsonl"):
        return [(number, _json_object(line, path, number))
                for number, line in read_lines(path, encoding) if line.strip()]
    opened = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding   # drop a BOM
    try:
        with open(path, encoding=opened, newline="") as handle:
            reader = csv.DictReader(handle)
            rows, start = [], 2
            for row in reader:   # a row's number is the line it starts on (quoted newlines span lines)
                rows.append((start, row))
                start = reader.line_num + 1
            return rows
    except UnicodeDecodeError as error:
        raise decoding_error(path, encoding, error) from None
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({error}).") from None


def _json_object(line, path, number):
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}); expected one JSON "
                         "object a line.") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
    return row


def _check_column(rows, column, path, option):
    if not any(column in row for _, row in rows):
        columns = sorted({key for _, row in rows for key in row if key is not None})
        raise ValueError(f"{path}: no column {column!r}; its columns are {columns}. Pick one with "
                         f"{option}.")


def row_texts(rows, path, text_column="text") -> List[str]:
    """The text of every row; a row without a non-empty str there is a ``ValueError``."""
    if not rows:
        raise ValueError(f"{path} holds no rows.")
    _check_column(rows, text_column, path, "text_column (--text-column)")
    texts = []
    for number, row in rows:
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}, line {number}, column {text_column!r}: expected a non-empty "
                             f"text, got {text!r}.")
        texts.append(text)
    return texts


def row_label(value) -> str:
    """A cell as a label: "-1" (unlabeled) for a missing, empty, null or NaN cell; 2.0 -> "2"."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return str(UNLABELED)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or str(UNLABELED)


def read_table(path, text_column="text", label_column="label", encoding="utf-8", labels=True,
               allow_unlabeled=True) -> Tuple[List[str], List[str]]:
    """``(texts, labels)`` of a CSV or JSON Lines file, labels as strings ("-1":
    unlabeled; without ``allow_unlabeled`` an error naming the row's line); with
    ``labels=False`` the label column is not read (labels is None).

    Examples
    --------
    >>> from ssl_textvae import read_table
    >>> texts, labels = read_table("tickets.csv", text_column="body")  # doctest: +SKIP
    """
    rows = read_rows(path, encoding)
    texts = row_texts(rows, path, text_column)
    if not labels:
        return texts, None
    _check_column(rows, label_column, path, "label_column (--label-column)")
    found = [row_label(row.get(label_column)) for _, row in rows]
    if not allow_unlabeled and str(UNLABELED) in found:
        number = rows[found.index(str(UNLABELED))][0]
        raise ValueError(f"{path}, line {number}, column {label_column!r}: no label (missing, empty, "
                         "null or -1); every row here needs one.")
    return texts, found


def write_rows(rows, path):
    """Write dicts as a CSV (columns in order of first appearance) or JSON Lines file."""
    if os.fspath(path).lower().endswith(".jsonl"):
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
