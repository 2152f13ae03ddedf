"""The helpers package the course's notebooks import as ``import helpers as h``.

Modules, each named by what it holds:

- ``laws``: published scaling laws and their constants, with citations.
- ``compute``: FLOPs of training (C ≈ 6·N·D) and unit conversions.
- ``check``: self-checks that print a ✓ line or raise.
- ``session``: ``setup()`` for the top of every chapter.
"""

from . import check, compute, laws, session
from .check import check_close, check_true
from .session import setup

__all__ = ["check", "check_close", "check_true", "compute", "laws", "session", "setup"]
