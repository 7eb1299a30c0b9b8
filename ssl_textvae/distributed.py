"""The public path of :func:`process_group` (README), which lives in :mod:`ssl_textvae.engine.distributed`."""

from .engine.distributed import process_group

__all__ = ["process_group"]
