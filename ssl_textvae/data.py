"""Texts in (lists, local files, Hugging Face ``datasets``), length-bucketed batches out.

A tokenized corpus is kept as one flat ``int32`` array of ids plus offsets, so
its memory is the ids alone, whatever container the texts came from.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from typing import List, Optional, Tuple

import numpy as np
import torch

from .tokenization import BOS_ID, EOS_ID, PAD_ID

ENCODE_CHUNK = 20_000


# -- text sources ---------------------------------------------------------------------
class TextFile:
    """A text file read lazily, one text a line, re-iterable (so it can be read twice:
    once to fit the vocabulary, once to encode). With ``labeled=True`` each line is
    ``label<TAB>text`` and only the text is yielded."""

    def __init__(self, path, labeled=False, encoding="utf-8"):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"No such text file: {self.path!r}.")
        self.labeled = labeled
        self.encoding = encoding

    def __iter__(self) -> Iterator[str]:
        with open(self.path, encoding=self.encoding) as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\n")
                if self.labeled and line.strip():  # a blank line is an empty text, as unlabeled
                    if "\t" not in line:
                        raise ValueError(f"{self.path}, line {number}: expected 'label<TAB>text', "
                                         f"got {line[:60]!r}.")
                    line = line.split("\t", 1)[1]
                yield line

    def __repr__(self):
        return f"TextFile({self.path!r}, labeled={self.labeled})"


def read_labeled_file(path, encoding="utf-8") -> Tuple[List[str], List[str]]:
    """Read a ``label<TAB>text`` file; returns ``(texts, labels)`` with labels as strings."""
    texts, labels = [], []
    with open(path, encoding=encoding) as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if "\t" not in line:
                raise ValueError(f"{path}, line {number}: expected 'label<TAB>text', got {line[:60]!r}.")
            label, text = line.split("\t", 1)
            labels.append(label)
            texts.append(text)
    return texts, labels


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


def iterate_texts(X) -> Iterable[str]:
    """A re-iterable of strings from a list, ``TextFile``, ``datasets.Dataset`` (first
    string column) or any object whose ``__iter__`` returns a fresh iterator."""
    if X is None:
        raise ValueError("Expected an iterable of texts, got None.")
    if isinstance(X, str):
        raise TypeError("Expected an iterable of texts (for example a list of strings), "
                        "got a single string.")
    if _is_hf_dataset(X):
        return _DatasetTexts(X)
    if not isinstance(X, Iterable):
        raise TypeError(f"Expected an iterable of texts, got {type(X).__name__}.")
    if isinstance(X, Iterator):
        raise TypeError("Got a one-shot iterator (for example a generator); the texts are read "
                        "twice (vocabulary, then ids). Pass a list, a TextFile, a datasets.Dataset "
                        "or an object whose __iter__ returns a fresh iterator.")
    if isinstance(X, np.ndarray) and X.ndim != 1:
        raise ValueError(f"Expected a 1-d array of texts, got shape {X.shape}.")
    return X


def _is_hf_dataset(X) -> bool:
    return type(X).__module__.startswith("datasets") and hasattr(X, "column_names")


class _DatasetTexts:
    """Iterates the text column of a ``datasets.Dataset`` in Arrow batches."""

    def __init__(self, dataset):
        string_columns = [name for name, feature in dataset.features.items()
                          if getattr(feature, "dtype", None) in ("string", "large_string")]
        if not string_columns:
            raise ValueError(f"The Dataset has no string column; columns: {dataset.column_names}.")
        self.dataset, self.column = dataset, string_columns[0]

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        for batch in self.dataset.iter(batch_size=ENCODE_CHUNK):
            yield from batch[self.column]


class ConcatTexts:
    """Re-iterable chain of text sources (for example labeled texts, then a pool)."""

    def __init__(self, *sources):
        self.sources = sources

    def __iter__(self):
        for source in self.sources:
            yield from source


def check_text(text, index) -> str:
    if not isinstance(text, str):
        raise TypeError(f"Expected every text to be a str; item {index} is {type(text).__name__} "
                        f"({text!r:.40}).")
    return text


# -- tokenized corpus -------------------------------------------------------------------
class EncodedCorpus:
    """Token ids of many texts as a flat ``int32`` array and ``int64`` offsets.

    Text ``i`` is ``ids[offsets[i]:offsets[i + 1]]`` (without ``<s>`` / ``</s>``).
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids = ids
        self.offsets = offsets

    @classmethod
    def from_texts(cls, tokenizer, texts, skip_empty=False) -> "EncodedCorpus":
        """Encode in chunks so only the ids stay in memory. Empty or whitespace-only
        texts raise, unless ``skip_empty`` (for pretraining pools, where they are
        dropped and counted in ``n_skipped``)."""
        id_chunks, lengths, n_skipped, chunk = [], [], 0, []

        def flush():
            # one int32 array per chunk of texts: no per-text objects stay alive
            nonlocal n_skipped
            encoded = [text_ids for text_ids in tokenizer.encode_batch(chunk) if text_ids]
            n_skipped += len(chunk) - len(encoded)
            chunk_lengths = [len(text_ids) for text_ids in encoded]
            id_chunks.append(np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32,
                                         count=sum(chunk_lengths)))
            lengths.append(np.asarray(chunk_lengths, dtype=np.int64))
            chunk.clear()

        for index, text in enumerate(texts):
            check_text(text, index)
            if not text.strip():
                if not skip_empty:
                    raise ValueError(f"Text {index} is empty or whitespace only; every text needs "
                                     "at least one token.")
                n_skipped += 1
                continue
            chunk.append(text)
            if len(chunk) >= ENCODE_CHUNK:
                flush()
        flush()
        ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, dtype=np.int32)
        lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        corpus = cls(ids, offsets)
        corpus.n_skipped = n_skipped
        return corpus

    def __len__(self):
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, indices) -> "EncodedCorpus":
        """The texts at ``indices``, in that order, as a new corpus (one vectorized gather)."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return EncodedCorpus(self.ids[_ranges(starts, lengths, offsets)], offsets)

    def n_tokens(self) -> int:
        """Tokens the decoder predicts: words plus one ``</s>`` per text."""
        return int(len(self.ids) + len(self))


def bucket_batches(lengths: np.ndarray, batch_size: int, shuffle: bool,
                   rng: Optional[np.random.Generator] = None, pool_factor: int = 50) -> List[np.ndarray]:
    """Index batches whose texts have (nearly) equal lengths.

    Texts are shuffled, cut into pools of ``pool_factor * batch_size``, sorted by
    length inside each pool and split into batches, whose order is then shuffled:
    random batches with almost no padding. A trailing batch of a single text is
    merged into its neighbour, since batch norm cannot normalize one example.
    """
    n = len(lengths)
    order = rng.permutation(n) if shuffle else np.arange(n)
    pool = batch_size * pool_factor if shuffle else n
    batches = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()  # pop first: `batches[-2] = f(batches.pop())` assigns after the pop
        batches[-1] = np.concatenate([batches[-1], last])
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(corpus: EncodedCorpus, indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """Padded ``[<s>, w_1..w_n, </s>]`` ids, shape (batch, max_len + 2), and lengths n + 2."""
    indices = np.asarray(indices, dtype=np.int64)
    starts = corpus.offsets[indices]
    words = corpus.offsets[indices + 1] - starts                          # (batch,) n
    lengths = words + 2
    batch = np.full((len(indices), int(lengths.max())), PAD_ID, dtype=np.int64)
    batch[:, 0] = BOS_ID
    inside = np.arange(batch.shape[1] - 2) < words[:, None]               # (batch, max_len)
    offsets = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(words, out=offsets[1:])
    batch[:, 1:-1][inside] = corpus.ids[_ranges(starts, words, offsets)]  # row-major = text order
    batch[np.arange(len(indices)), words + 1] = EOS_ID
    return torch.from_numpy(batch), torch.from_numpy(lengths)


def _ranges(starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Positions ``starts[i] .. starts[i] + lengths[i] - 1`` of every i, concatenated;
    ``offsets`` is the cumulative sum of ``lengths`` with a leading 0."""
    return np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)


def padding_fraction(lengths: np.ndarray, batches) -> float:
    """Share of the padded token grid that is padding (a check on the bucketing)."""
    real = sum(int(lengths[b].sum()) for b in batches)
    grid = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / grid if grid else 0.0


def n_batches(n_texts: int, batch_size: int) -> int:
    """How many batches :func:`bucket_batches` makes of ``n_texts`` texts (pools hold
    whole batches, so only a final single text is merged into its neighbour)."""
    count = math.ceil(n_texts / batch_size)
    return count - 1 if count > 1 and n_texts % batch_size == 1 else count
