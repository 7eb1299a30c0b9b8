"""The public path of :class:`SaveError` (README), which lives in :mod:`ssl_textvae.estimators.persistence`."""

from .estimators.persistence import SaveError

__all__ = ["SaveError"]
