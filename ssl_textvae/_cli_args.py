"""The command line's argument types and one-line messages (:mod:`ssl_textvae.cli`):
every usage error, error and warning is one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import warnings


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (the subcommand's --help has the usage), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(low):
    """An argparse type: an int >= ``low`` (0: "a non-negative integer")."""
    wanted = "a non-negative integer" if low == 0 else f"an integer >= {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


def finite_float(positive):
    """An argparse type: a finite float, above 0 when ``positive``."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or positive and value <= 0:
            raise argparse.ArgumentTypeError(
                f"expected a {'positive' if positive else 'finite'} number, got {text!r}")
        return value

    return parse


NATURAL, POSITIVE = _integer(0), _integer(1)


def parse_param(text):
    """``NAME=VALUE`` -> (NAME, VALUE); VALUE as JSON when it parses (8, 0.5, null, true), else a str."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (for example vae__latent_dim=8), "
                                         f"got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


@contextlib.contextmanager
def one_line_warnings(command):
    """Warnings printed as ``ssl-textvae COMMAND: warning: ...``, one line each."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"ssl-textvae {command}: warning: {one_line(message)}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def one_line(error):
    return " ".join(str(error).split())
