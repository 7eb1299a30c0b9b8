"""Parameter documentation generated from the signature, so that each default of an
estimator is written once, where scikit-learn's ``get_params`` reads it."""

from __future__ import annotations

import inspect
import re


def document_defaults(doc, function):
    """``doc`` with ``, default=...`` added to each parameter line of its Parameters
    section (``    name : type``, or ``    a, b : type``), from ``function``'s signature.
    A line that writes its own default is a ``ValueError``: it would drift."""
    signature = inspect.signature(function).parameters
    lines = doc.split("\n")
    for i in range(lines.index("    Parameters") + 2, len(lines)):
        if i + 1 < len(lines) and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}:
            break   # the next section's title
        header = re.fullmatch(r"    (\w+(?:, \w+)*) : (.+)", lines[i])
        if header is None:
            continue
        if "default=" in header.group(2):
            raise ValueError(f"{lines[i].strip()!r} writes its default; the signature holds it.")
        values = [default_text(signature[name].default) for name in header.group(1).split(", ")]
        lines[i] += ", default=" + (values[0] if len(set(values)) == 1 else ", ".join(values))
    return "\n".join(lines)


def default_text(value) -> str:
    """A default as numpydoc writes it: ``"word"``, ``None``, ``10000``, ``0.5``, and
    small floats as powers of ten: ``1e-3``, ``2e-5`` (repr writes 0.001, 2e-05)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and 0 < abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return repr(value)
