"""``python -m robo_player.spec --schema | --markdown | --check SPEC...``."""

from .loader import main

raise SystemExit(main())
