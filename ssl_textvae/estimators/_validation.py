"""Checks of estimator parameters, worded as scikit-learn words them (texts and labels:
:mod:`ssl_textvae.text.inputs`)."""

from __future__ import annotations

import numbers
import os
from types import SimpleNamespace

import numpy as np


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


class IsBool:
    def __contains__(self, value):
        return isinstance(value, (bool, np.bool_))

    def __str__(self):
        return "a bool"


class IsPath:
    """A str or os.PathLike, or None."""

    def __contains__(self, value):
        return value is None or isinstance(value, (str, os.PathLike))

    def __str__(self):
        return "a str or os.PathLike (a directory) or None"


def validate_params(estimator, constraints):
    """The values of the parameters named in ``constraints``, checked, as a namespace
    (``params.latent_dim``); ``ValueError`` for the first one outside its constraint.

    A numpy scalar that passes (``np.int64(4)`` from a ``GridSearchCV`` grid over
    ``np.arange``) comes back as the equal Python number: torch's modules take
    Python ints only. The estimator itself is left as it is (scikit-learn's
    contract: ``fit`` never changes a parameter), so ``fit`` reads these values."""
    values = {}
    for name, constraint in constraints.items():
        value = getattr(estimator, name)
        if value not in constraint:
            raise ValueError(f"The {name!r} parameter of {type(estimator).__name__} must be "
                             f"{constraint}. Got {value!r} instead.")
        values[name] = python_scalar(value)
    return SimpleNamespace(**values)


def python_scalar(value):
    """``value``, a numpy scalar as the equal Python number (bool, int, float)."""
    return value.item() if isinstance(value, np.generic) else value


def string_input_tags(tags):
    """scikit-learn tags of an estimator whose X is a list of texts."""
    tags.input_tags.two_d_array = False
    tags.input_tags.string = True
    if tags.transformer_tags is not None:
        tags.transformer_tags.preserves_dtype = []   # float32 means, whatever the input
    return tags
