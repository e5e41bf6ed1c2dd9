"""The device side: the simulated solenoid piano and the simulated MCUs.

- :mod:`.instrument`: the piano (hidden :mod:`.truth`, :mod:`.physics`, :mod:`.sensor`)
  as an instrument that hears output changes; ``sim://`` (:mod:`.device`) plays plans
  on it, the simulated MCUs play their firmware's traces on it;
- :mod:`.vmcu`: the firmware's Python model on virtual time; :mod:`.mcu_process`: the
  host build and the simavr harness as processes (:mod:`.simclock`: simavr's clock);
  :mod:`.ports`: the ``vmcu://``, ``fw-host://`` and ``fw-avr://`` factories;
- :mod:`.audio` and :mod:`.pianoroll` (imported on use: heavier dependencies).

See ``docs/simulator.md``. The host side (driver, planner, CLI) never imports this
package: it reaches these devices through the port registry.
"""

from .device import SimDevice, open_sim
from .instrument import SimulatedInstrument
from .physics import CoilEvent, PianoPhysics, expand_plan
from .sensor import Microphone
from .truth import KeyTruth, Truth

__all__ = [
    "CoilEvent",
    "KeyTruth",
    "Microphone",
    "PianoPhysics",
    "SimDevice",
    "SimulatedInstrument",
    "Truth",
    "expand_plan",
    "open_sim",
]
