"""``python -m robo_player`` runs the ``robo-player`` command."""

from .cli import main

raise SystemExit(main())
