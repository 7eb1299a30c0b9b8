"""The input layer: where texts and labels come from, and their checks.

Every text that enters the package passes :func:`check_text` (one message for a
non-string) once: lists of texts :func:`check_texts` (a :class:`TextList` that the
layers below take as it is), streamed sources :func:`iterate_texts` (checked on
their first pass), labels :func:`check_labels`; ``label<TAB>text`` files are
read by :func:`read_labeled_file` (and streamed by :class:`TextFile`), which
split each line with the same :func:`split_labeled_line`.
"""

from __future__ import annotations

import codecs
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Set
from typing import List, Tuple

import numpy as np

UNLABELED = -1
READ_CHUNK = 20_000


# -- texts -------------------------------------------------------------------------------
def check_text(text, index, name="X") -> str:
    """``text`` itself when it is a str; else a ``TypeError`` naming item ``index`` of
    ``name``, or a ``ValueError`` when it is not valid Unicode (a lone surrogate such
    as ``"\\ud800"``, which no tokenizer can encode)."""
    if not isinstance(text, str):
        raise TypeError(f"Expected every item of {name} to be a str; item {index} is "
                        f"{type(text).__name__} ({text!r:.40}).")
    if not text.isascii():   # the fast path: ASCII is always valid
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"Item {index} of {name} is not valid Unicode: it holds the lone "
                             f"surrogate {text[error.start]!r} at position {error.start} "
                             f"({text!r:.40}). Decode the source with errors='replace' or drop "
                             "the item.") from None
    return text


def _check_ordered(X, name):
    """Refuse the containers whose iteration is not a sequence of texts in row order."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"Expected {name} to be a list of texts, got a single {type(X).__name__}; "
                        "wrap it in a list: [text].")
    if isinstance(X, (Mapping, Set)):
        kind = "mapping" if isinstance(X, Mapping) else "set"
        raise TypeError(f"Expected {name} to be a list, 1-d array or pandas Series of str, got a "
                        f"{type(X).__name__} (a {kind}: iterating it gives "
                        f"{'its keys' if kind == 'mapping' else 'its items in arbitrary order'}, "
                        f"so the outputs would not line up with the rows). Pass list(...) of the "
                        "texts in the order wanted.")


def check_texts(X, name="X", allow_empty=False) -> List[str]:
    """A list of str, one per row of ``X``: a list, 1-d array, ``pandas.Series`` or
    one-column ``pandas.DataFrame``. Empty or whitespace-only texts raise unless
    ``allow_empty`` (predicted rows: they are encoded as one unknown token). A single
    str, a dict or other mapping (it iterates its keys) and a set (no row order) are a
    ``TypeError``; an item that is not valid Unicode a ``ValueError`` naming it."""
    checked = isinstance(X, TextList)   # checked before: only the emptiness rule is left
    if not checked:
        if X is None:
            raise ValueError(f"Expected {name} to be a list of texts, got None.")
        X = _pandas_texts(X, name)
        _check_ordered(X, name)
        if isinstance(X, np.ndarray) and X.ndim != 1:
            raise ValueError(f"Expected {name} to be a 1-d list of texts, got an array of shape {X.shape}.")
        if not hasattr(X, "__len__") or not hasattr(X, "__iter__"):
            raise TypeError(f"Expected {name} to be a list of texts, got {type(X).__name__}.")
    texts = X if checked else TextList(X)
    if not texts:
        raise ValueError(f"Found 0 texts in {name}; expected at least 1.")
    if checked and allow_empty:
        return texts
    for index, text in enumerate(texts):
        if not (text if checked else check_text(text, index, name)).strip() and not allow_empty:
            raise empty_text_error(index, name)
    return texts


class TextList(list):
    """A list of str that passed :func:`check_text` (what :func:`check_texts` returns):
    the layers below take it without checking each text again. A subset of one is
    built as ``TextList(...)`` by the code that took it."""


def is_checked(texts) -> bool:
    """Whether every text of ``texts`` was checked, or is checked as it is read
    (:func:`iterate_texts`), so that a layer below need not check it again."""
    if isinstance(texts, ConcatTexts):
        return all(is_checked(source) for source in texts.sources)
    return isinstance(texts, (TextList, _CheckedTexts))


def _pandas_texts(X, name="X"):
    """The values of a ``pandas.Series``, or of the one column of a ``DataFrame``
    (iterating a DataFrame yields its column names, never its rows)."""
    if not type(X).__module__.startswith("pandas"):
        return X
    if hasattr(X, "columns"):
        if X.shape[1] != 1:
            raise ValueError(f"Expected {name} to be a list of texts; got a DataFrame with "
                             f"{X.shape[1]} columns {list(X.columns)[:10]}. Select the text "
                             "column: X[\"text\"].")
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy"):
        return X.to_numpy(dtype=object)
    return X


def empty_text_error(index, name="X") -> ValueError:
    return ValueError(f"Item {index} of {name} is empty or whitespace only; every text needs "
                      "at least one token.")


def iterate_texts(X) -> Iterable[str]:
    """A re-iterable of strings from a list, ``TextFile``, ``datasets.Dataset`` (first
    string column) or any object whose ``__iter__`` returns a fresh iterator (for
    pretraining pools, which may not fit in memory; items are checked as they are read)."""
    if is_checked(X):
        return X
    if X is None:
        raise ValueError("Expected an iterable of texts, got None.")
    if isinstance(X, (str, bytes)):
        raise TypeError("Expected an iterable of texts (for example a list of strings), "
                        f"got a single {'bytes object' if isinstance(X, bytes) else 'string'}.")
    X = _pandas_texts(X)
    _check_ordered(X, "the texts")
    if _is_hf_dataset(X):
        return _CheckedTexts(_DatasetTexts(X))
    if not isinstance(X, Iterable):
        raise TypeError(f"Expected an iterable of texts, got {type(X).__name__}.")
    if isinstance(X, Iterator):
        raise TypeError("Got a one-shot iterator (for example a generator); the texts are read "
                        "twice (vocabulary, then ids). Pass a list, a TextFile, a datasets.Dataset "
                        "or an object whose __iter__ returns a fresh iterator.")
    if isinstance(X, np.ndarray) and X.ndim != 1:
        raise ValueError(f"Expected a 1-d array of texts, got shape {X.shape}.")
    return _CheckedTexts(X)


class _CheckedTexts:
    """Re-iterates ``source``, passing each item through :func:`check_text` until one
    pass has read them all: a re-iterable source gives the same texts on every pass
    (vocabulary, then ids), so each is checked once."""

    def __init__(self, source):
        self.source, self.checked = source, False

    def __len__(self):
        return len(self.source)

    def __iter__(self):
        if self.checked:
            yield from self.source
            return
        for index, text in enumerate(self.source):
            yield check_text(text, index)
        self.checked = True


# -- labels ------------------------------------------------------------------------------
def check_labels(y, n_texts, allow_unlabeled=True):
    """``(labels, unlabeled)``: a 1-d array of int or str class labels and the mask of
    its unlabeled rows, -1 (or "-1")."""
    if y is None:
        raise ValueError("y is None; expected one label per text (-1 for unlabeled texts).")
    given, y = y, np.asarray(y)
    if y.dtype.kind == "U" and not (isinstance(given, np.ndarray) and given.dtype.kind == "U"):
        y = np.asarray(given, dtype=object)   # [1, "a"] would silently become ["1", "a"]
    if y.ndim != 1:
        raise ValueError(f"Expected y to be 1-d, got an array of shape {y.shape}.")
    if len(y) != n_texts:
        raise ValueError(f"X and y have inconsistent numbers of samples: {n_texts} texts, "
                         f"{len(y)} labels.")
    if y.dtype.kind == "f":
        problem = "NaN" if np.isnan(y).any() else "float"
        raise ValueError(f"y holds {problem} values; expected integer or string class labels. Mark "
                         "unlabeled texts with -1 (not NaN) and cast y to int.")
    if y.dtype.kind == "O":
        kinds = {type(v) for v in y}
        if not all(issubclass(k, (str, numbers.Integral)) for k in kinds) or len(
                {issubclass(k, str) for k in kinds}) > 1:
            raise ValueError(f"y mixes label types {sorted(k.__name__ for k in kinds)}; expected all "
                             "int or all str labels.")
        y = y.astype(str) if issubclass(next(iter(kinds)), str) else y.astype(np.int64)
    if y.dtype.kind not in "iuU":
        raise ValueError(f"Expected int or str class labels, got dtype {y.dtype}.")
    unlabeled = is_unlabeled(y)
    if unlabeled.any() and not allow_unlabeled:
        raise ValueError("y contains -1 (unlabeled) entries; every text here needs a label.")
    return y, unlabeled


def is_unlabeled(y):
    return y == (str(UNLABELED) if y.dtype.kind == "U" else UNLABELED)


def check_semi_supervised(X, y):
    """``(texts, labels, unlabeled)`` of a classifier's ``fit``: the checked texts and
    labels and the mask of the rows marked -1; at least two classes among the others."""
    texts = check_texts(X, allow_empty=True)
    labels, unlabeled = check_labels(y, len(texts))
    for index, text in enumerate(texts):   # an empty unlabeled row is skipped, as BNVAE.fit does
        if not unlabeled[index] and not text.strip():
            raise empty_text_error(index)
    check_classes(labels[~unlabeled])
    return texts, labels, unlabeled


def check_classes(labels):
    """The sorted classes of the labeled rows; at least two."""
    classes = np.unique(labels)
    if len(classes) == 0:
        raise ValueError("Every label is -1 (unlabeled); the classifier needs labeled texts of at "
                         "least 2 classes.")
    if len(classes) < 2:
        raise ValueError(f"The labeled texts hold only one class ({classes[0]!r}); the classifier "
                         "needs at least 2 classes.")
    return classes


# -- files -------------------------------------------------------------------------------
def split_labeled_line(line, where, allow_unlabeled=False) -> Tuple[str, str]:
    """``(label, text)`` of a ``label<TAB>text`` line (the text may hold more tabs).

    With ``allow_unlabeled`` a line without a tab, or with an empty label, is an
    unlabeled text (label "-1"); otherwise it raises a ``ValueError`` naming ``where``.
    """
    label, tab, text = line.partition("\t")
    if tab and label.strip():
        return label.strip(), text
    if allow_unlabeled:
        return str(UNLABELED), text if tab else line
    raise ValueError(f"{where}: expected 'label<TAB>text', got {line[:60]!r}. Mark unlabeled "
                     "texts with the label -1.")


def read_labeled_file(path, encoding="utf-8", allow_unlabeled=False) -> Tuple[List[str], List[str]]:
    """``(texts, labels)`` of a ``label<TAB>text`` file, labels as strings; blank lines
    are skipped. A line without a tab raises, unless ``allow_unlabeled`` (then it is
    an unlabeled text, label "-1"). The label -1 marks an unlabeled text either way."""
    texts, labels = [], []
    for number, line in read_lines(path, encoding):
        if not line.strip():
            continue
        label, text = split_labeled_line(line, f"{path}, line {number}", allow_unlabeled)
        labels.append(label)
        texts.append(text)
    if not texts:
        raise ValueError(f"{path} holds no texts; expected 'label<TAB>text' lines.")
    return texts, labels


def read_lines(path, encoding="utf-8") -> Iterator[Tuple[int, str]]:
    """``(line number, line without its newline)`` of a text file; a file that is not in
    ``encoding`` raises a ``ValueError`` naming the line and saying how to fix it. UTF-8
    is read as "utf-8-sig": a byte-order mark (Windows editors write one) is dropped, not
    glued to the first label or text. Lines end at "\\n", "\\r\\n" or "\\r" (Python's
    universal newlines)."""
    opened = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with open(path, encoding=opened) as handle:
            for number, line in enumerate(handle, 1):
                yield number, line.rstrip("\n")
    except UnicodeDecodeError as error:
        raise decoding_error(path, encoding, error) from None


def decoding_error(path, encoding, error) -> ValueError:
    """The message for ``path`` that ``encoding`` cannot decode: where, and what to do."""
    byte = error.object[error.start:error.start + 1].hex()
    where = f"at byte {error.start} of a read block"
    try:
        with open(path, "rb") as handle:   # find the line (the error only knows its block)
            for number, raw in enumerate(handle, 1):
                try:
                    raw.decode(encoding)
                except UnicodeDecodeError as line_error:
                    byte = raw[line_error.start:line_error.start + 1].hex()
                    where = f"line {number}"
                    break
    except (OSError, LookupError):
        pass
    return ValueError(f"{os.fspath(path)!r} is not valid {encoding} text: {where} holds the byte "
                      f"0x{byte}. Convert it to UTF-8 (for example iconv -f latin1 -t utf-8 FILE > "
                      "FILE.utf8, or 'save as UTF-8' in a spreadsheet or editor) or pass its "
                      "encoding (encoding='latin-1', 'cp1252', ...).")


class TextFile:
    """A text file read lazily, one text a line, re-iterable (so it can be read twice:
    once to fit the vocabulary, once to encode). With ``labeled=True`` each line is
    ``label<TAB>text`` (split as :func:`read_labeled_file` splits it) and only the
    text is yielded. Read as :func:`read_lines` reads (a UTF-8 byte-order mark dropped,
    ``\\n``, ``\\r\\n`` or ``\\r`` line ends); a blank line is yielded as it is.

    See Also
    --------
    read_labeled_file : texts and labels of a small labeled file, in memory.
    ConcatTexts : several sources chained.

    Examples
    --------
    >>> from ssl_textvae import BNVAE, TextFile
    >>> vae = BNVAE().fit(TextFile("pool.txt"))  # doctest: +SKIP
    """

    def __init__(self, path, labeled=False, encoding="utf-8"):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"No such text file: {self.path!r}.")
        self.labeled = labeled
        self.encoding = encoding

    def __iter__(self) -> Iterator[str]:
        for number, line in read_lines(self.path, self.encoding):
            if self.labeled and line.strip():  # a blank line is an empty text, as unlabeled
                line = split_labeled_line(line, f"{self.path}, line {number}")[1]
            yield line

    def __repr__(self):
        return f"TextFile({self.path!r}, labeled={self.labeled})"


class ConcatTexts:
    """Re-iterable chain of text sources (for example labeled texts, then a pool).

    See Also
    --------
    TextFile : a text file streamed line by line.

    Examples
    --------
    >>> from ssl_textvae import ConcatTexts
    >>> list(ConcatTexts(["a b"], ["c"]))
    ['a b', 'c']
    """

    def __init__(self, *sources):
        self.sources = sources

    def __iter__(self):
        for source in self.sources:
            yield from source


def load_hf_texts(path, split="train", text_column="text", label_column=None, **kwargs):
    """Load a Hugging Face data set (a hub name when online, or a local file / folder
    such as ``load_hf_texts("csv", data_files="pool.csv")``).

    Returns the ``datasets.Dataset`` column of texts (re-iterable, Arrow-backed so it
    is not held in memory) and, with ``label_column``, the list of labels.
    """
    import datasets

    dataset = datasets.load_dataset(path, split=split, **kwargs)
    if text_column not in dataset.column_names:
        raise ValueError(f"Column {text_column!r} not in the data set; it has {dataset.column_names}.")
    texts = dataset.select_columns([text_column])
    if label_column is None:
        return texts
    return texts, list(dataset[label_column])


def _is_hf_dataset(X) -> bool:
    return type(X).__module__.startswith("datasets") and hasattr(X, "column_names")


class _DatasetTexts:
    """Iterates the text column of a ``datasets.Dataset`` in Arrow batches."""

    def __init__(self, dataset):
        string_columns = [name for name, feature in dataset.features.items()
                          if getattr(feature, "dtype", None) in ("string", "large_string")]
        if not string_columns:
            raise ValueError(f"The Dataset has no string column; columns: {dataset.column_names}.")
        if len(string_columns) > 1:
            raise ValueError(f"The Dataset has {len(string_columns)} string columns "
                             f"{string_columns}; expected one. Select the text column: "
                             f"dataset.select_columns([{string_columns[0]!r}]).")
        self.dataset, self.column = dataset, string_columns[0]

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        for batch in self.dataset.iter(batch_size=READ_CHUNK):
            yield from batch[self.column]
