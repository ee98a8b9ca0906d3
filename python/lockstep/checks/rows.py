"""Every checklist row, imported in the order ``lockstep check`` prints them."""

from . import codec, connectivity  # noqa: F401
