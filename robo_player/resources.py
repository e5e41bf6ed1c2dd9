"""Where the shipped files are: in a source checkout, or inside an installed package.

The one source of the specs is ``hardware_specs/`` and of the shipped model ``models/``
at the top of the repository. A wheel copies them into ``robo_player/_shipped/``
(see ``setup.py``), so an installed robo_player finds them without the checkout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent
SHIPPED = _PACKAGE / "_shipped"  # filled by setup.py's build_py in a wheel


def shipped_dir(name: str) -> Path:
    """``hardware_specs`` or ``models``: the checkout's folder if there is one, else the
    installed copy (which may not exist: callers report a missing file by its path)."""
    checkout = _CHECKOUT / name
    if checkout.is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return checkout
    return SHIPPED / name
