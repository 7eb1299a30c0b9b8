"""Checks of parameters, texts and labels, worded as scikit-learn words them."""

from __future__ import annotations

import numbers

import numpy as np

UNLABELED = -1


class Interval:
    """Numbers of ``kind`` (int or float) between ``low`` and ``high`` (None: unbounded)."""

    def __init__(self, kind, low, high, closed="both", allow_none=False, allow_bool=False):
        self.kind, self.low, self.high, self.closed, self.allow_none = kind, low, high, closed, allow_none
        self.allow_bool = allow_bool

    def __contains__(self, value):
        if value is None:
            return self.allow_none
        if isinstance(value, bool) and not self.allow_bool or not isinstance(value, self.kind):
            return False
        if self.kind is numbers.Real and not np.isfinite(value):   # NaN, inf and -inf
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok

    def __str__(self):
        kind = "an int" if self.kind is numbers.Integral else "a float"
        # an unbounded side is open, as scikit-learn writes it: "[1, inf)"
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        text = f"{kind} in the range {left}{low}, {high}{right}"
        return text + " or None" if self.allow_none else text


class Options:
    def __init__(self, *options):
        self.options = options

    def __contains__(self, value):
        return isinstance(value, str) and value in self.options

    def __str__(self):
        return "a str among {" + ", ".join(repr(o) for o in self.options) + "}"


def validate_params(estimator, constraints):
    """Raise ``ValueError`` for the first parameter outside its constraint."""
    for name, constraint in constraints.items():
        value = getattr(estimator, name)
        if value not in constraint:
            raise ValueError(f"The {name!r} parameter of {type(estimator).__name__} must be "
                             f"{constraint}. Got {value!r} instead.")


def check_texts(X, name="X"):
    """A list of str with the same length as the input, for labeled or predicted rows."""
    if X is None:
        raise ValueError(f"Expected {name} to be a list of texts, got None.")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"Expected {name} to be a list of texts, got a single {type(X).__name__}; "
                        "wrap it in a list: [text].")
    if isinstance(X, np.ndarray) and X.ndim != 1:
        raise ValueError(f"Expected {name} to be a 1-d list of texts, got an array of shape {X.shape}.")
    if not hasattr(X, "__len__") or not hasattr(X, "__iter__"):
        raise TypeError(f"Expected {name} to be a list of texts, got {type(X).__name__}.")
    texts = list(X)
    if not texts:
        raise ValueError(f"Found 0 texts in {name}; expected at least 1.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Expected every item of {name} to be a str; item {index} is "
                            f"{type(text).__name__} ({text!r:.40}).")
        if not text.strip():
            raise ValueError(f"Item {index} of {name} is empty or whitespace only; every text "
                             "needs at least one token.")
    return texts


def check_labels(y, n_texts, allow_unlabeled=True):
    """A 1-d array of int or str class labels; -1 (or '-1') marks an unlabeled row."""
    if y is None:
        raise ValueError("y is None; expected one label per text (-1 for unlabeled texts).")
    y = np.asarray(y)
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


def check_classes(labels):
    classes = np.unique(labels)
    if len(classes) == 0:
        raise ValueError("Every label is -1 (unlabeled); the classifier needs labeled texts of at "
                         "least 2 classes.")
    if len(classes) < 2:
        raise ValueError(f"The labeled texts hold only one class ({classes[0]!r}); the classifier "
                         "needs at least 2 classes.")
    return classes
