"""robo_player: make robots play real instruments.

The core (score, MIDI, specs, planner, driver, simulator, CLI) imports without torch;
the performance model lives in :mod:`robo_player.model` behind the ``model`` extra.
"""

__version__ = "0.1.0"
