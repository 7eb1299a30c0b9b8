"""The public path of :mod:`ssl_textvae.nn.pretrained` (the pretrained-transformer encoder)."""

from .nn.pretrained import *  # noqa: F401,F403
from .nn.pretrained import __all__  # noqa: F401
