"""The simulated solenoid piano (``sim://``): physics, microphone, audio, piano roll.

See ``docs/simulator.md``. :mod:`.audio` and :mod:`.pianoroll` are imported on use
(they pull in heavier dependencies); the rest is importable from here.
"""

from .device import SimDevice, open_sim
from .physics import CoilEvent, PianoPhysics, expand_plan
from .sensor import Microphone
from .truth import KeyTruth, Truth

__all__ = [
    "CoilEvent",
    "KeyTruth",
    "Microphone",
    "PianoPhysics",
    "SimDevice",
    "Truth",
    "expand_plan",
    "open_sim",
]
