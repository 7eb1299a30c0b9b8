"""Optuna, an optional dependency, imported only when a tuning function needs it."""

from __future__ import annotations

INSTALL_HINT = "pip install 'ssl_textvae[tuning]'"


def import_optuna():
    try:
        import optuna
    except ImportError as error:
        raise ImportError("ssl_textvae.tuning needs the optional dependency Optuna, which is not "
                          f"installed. Install the extra with: {INSTALL_HINT}") from error
    return optuna
