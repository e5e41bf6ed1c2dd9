"""Hardware specs as frozen dataclasses: the shared part and the piano family.

Loaded and validated from YAML by :mod:`robo_player.spec.loader`. Units are in the
names: ``*_us`` microseconds, ``*_v`` volts, ``*_a`` amperes, ``*_ohm``, ``*_s``
seconds. Drive levels and duties in a spec are fractions of full drive (0..1); the
planner turns them into PWM counts with each actuator's ``pwm_bits``.

Every family's spec satisfies :class:`InstrumentSpec`: a name, a ``family``, the
shared sections (``boards``, ``power``, ``thermal``), a content hash and the compiled
:class:`~robo_player.spec.actuators.ActuatorMap`. Layers below the planner (driver,
firmware configuration, simulator) read ``spec.actuators``, not a family's own section
(the piano's ``keys`` and ``pedal``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .actuators import ActuatorMap

FAMILIES = ("piano", "guitar", "bass")  # instrument families a spec may name
SUPPORTED_FAMILIES = ("piano", "guitar", "bass")  # the ones this version can load and plan


class DriverKind(Enum):
    PCA9685 = "pca9685"  # 16-channel 12-bit I2C PWM board
    DIRECT = "direct"  # MCU timer pins


@dataclass(frozen=True, slots=True)
class DriverBoard:
    id: str
    kind: DriverKind
    channels: int  # outputs on the board
    pwm_bits: int  # resolution of this board's PWM
    pwm_hz: int
    i2c_address: int | None = None  # 0x40..0x7F for PCA9685, None for direct
    # step/dir carriages on this board: the steps per second its MCU makes, all
    # carriages together (None: DEFAULT_MAX_STEPS_PER_S where a carriage is on it)
    max_steps_per_s: int | None = field(default=None, metadata={"hashed": "if set"})


@dataclass(frozen=True, slots=True)
class KeySpec:
    pitch: int  # MIDI note number
    channel: int  # global actuator index; unique across keys and pedal
    board: str  # DriverBoard.id
    pwm_bits: int  # PWM resolution for this key (<= its board's)

    @property
    def pwm_max(self) -> int:
        return (1 << self.pwm_bits) - 1


@dataclass(frozen=True, slots=True)
class StrikeSpec:
    min_pulse_us: int  # shortest full-drive pulse the driver can give
    max_pulse_us: int  # longest full-drive pulse before the coil must drop to hold
    default_pulse_us: int  # pulse used for every strike unless the planner shortens it
    hold_duty: float  # duty (0..1) that holds a key down after the pulse
    min_drive: float  # lowest drive (0..1) the planner will ever command
    # the longest pulse any key needs for full effect (P_full's upper bound): a strike
    # may be cut to it without playing softer (a fast repeat's earlier release,
    # docs/hearing.md §3); None: default_pulse_us. Not hashed: the calibration strikes
    # with default_pulse_us whatever it says, and a plan carries each pulse it uses
    pulse_full_max_us: int | None = field(default=None, metadata={"hashed": False})

    @property
    def full_pulse_us(self) -> int:
        """The shortest pulse that reaches full effect on every key, as the spec knows."""
        return self.default_pulse_us if self.pulse_full_max_us is None else self.pulse_full_max_us


@dataclass(frozen=True, slots=True)
class ThermalSpec:
    max_on_us: int  # longest a coil may stay energised (pulse + hold) in one go
    coil_tau_s: float  # coil thermal time constant (exponential cooling)
    coil_heat_capacity_j_per_k: float  # J/K of one coil
    coil_max_rise_k: float  # allowed temperature rise over ambient
    # the firmware's watchdog fires this long after the host's last frame; then the queue
    # already on the MCU plays out for at most watchdog_drain_ms (nothing new taken), then
    # all off (docs/protocol.md "Watchdog"). Link settings, not part of the spec's
    # content hash (plans and calibrations do not depend on them)
    watchdog_ms: int | None = field(default=None, metadata={"hashed": False})
    watchdog_drain_ms: int | None = field(default=None, metadata={"hashed": False})


@dataclass(frozen=True, slots=True)
class PowerSpec:
    supply_v: float
    supply_a: float  # supply current limit
    coil_ohm: float
    max_simultaneous_strikes: int  # strikes whose pulses may overlap (power budget)


@dataclass(frozen=True, slots=True)
class TimingSpec:
    pipeline_delay_us: int  # every note is held back by this much (>= slowest latency)
    min_repeat_us: int  # shortest strike-to-strike interval on one key
    key_return_us: int  # nominal time a released key needs to come back up


# A key's full-drive loudness lies within this fraction of the nominal curve's (a maker's
# stated spread of hammers, felts and coils; the simulator's truth draws 135 +- 20 %,
# sim/truth.py GAIN). The take's level through audio is anchored on the nominal: this is
# what one key's strike can be off by (calibrator/listening.py, hearing/level.py).
KEY_LOUDNESS_TOLERANCE = 0.20


@dataclass(frozen=True, slots=True)
class NominalCurves:
    """Curves used before calibration: drive fraction -> heard velocity and latency."""

    threshold: float  # drive below which the hammer never reaches the string
    drive: tuple[float, ...]  # increasing, all > threshold
    velocity: tuple[float, ...]  # increasing, MIDI velocity units
    latency_us: tuple[int, ...]  # decreasing: drive start to string contact


@dataclass(frozen=True, slots=True)
class PedalSpec:
    channel: int  # global actuator index
    board: str
    pwm_bits: int
    latency_us: int  # nominal: command to dampers lifted/lowered
    hold_duty: float  # the level that holds the pulled-in solenoid (fraction of full)
    # full drive this long before the hold (None: min(latency_us, strike.max_pulse_us),
    # :func:`robo_player.planner.pedal.pull_in_us`); hashed only when set
    pull_in_us: int | None = field(default=None, metadata={"hashed": "if set"})

    @property
    def pwm_max(self) -> int:
        return (1 << self.pwm_bits) - 1


@dataclass(frozen=True, slots=True)
class SyncClickSpec:
    """A click on a spare output (a piezo disc by the microphone, through a MOSFET): the
    hearing's absolute time reference. The click sounds ``delay_us`` after its output's
    on-edge (the piezo's response plus the sound's way to the microphone)."""

    channel: int  # global actuator index
    board: str
    pwm_bits: int
    delay_us: int  # output on-edge to the click at the microphone
    pulse_us: int  # how long the output stays on per click

    @property
    def pwm_max(self) -> int:
        return (1 << self.pwm_bits) - 1


@runtime_checkable
class InstrumentSpec(Protocol):
    """What every family's spec has: the shared part and the actuator map."""

    @property
    def name(self) -> str: ...
    @property
    def family(self) -> str: ...  # one of FAMILIES
    @property
    def boards(self) -> tuple[DriverBoard, ...]: ...
    @property
    def power(self) -> PowerSpec: ...
    @property
    def thermal(self) -> ThermalSpec: ...
    @property
    def spec_hash(self) -> str: ...
    @property
    def actuators(self) -> ActuatorMap: ...


@dataclass(frozen=True, slots=True)
class PianoSpec:
    """The piano family: the shared part plus keys, strike, timing, nominal curves, pedal.

    ``actuators`` is compiled from the keys and the pedal when the spec is made (also by
    :func:`dataclasses.replace`); it is not part of the content hash.
    """

    family: ClassVar[str] = "piano"

    name: str
    description: str
    boards: tuple[DriverBoard, ...]
    keys: tuple[KeySpec, ...]  # sorted by pitch, contiguous
    strike: StrikeSpec
    thermal: ThermalSpec
    power: PowerSpec
    timing: TimingSpec
    nominal: NominalCurves
    pedal: PedalSpec | None = None
    # the hearing's time reference (docs/hearing.md); plans and calibrations do not
    # depend on it, so it is not part of the content hash
    sync_click: SyncClickSpec | None = field(default=None, metadata={"hashed": False})
    actuators: ActuatorMap = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from .actuators import piano_actuators  # actuators.py imports this module

        object.__setattr__(self, "actuators", piano_actuators(self))

    @property
    def lowest(self) -> int:
        return self.keys[0].pitch

    @property
    def highest(self) -> int:
        return self.keys[-1].pitch

    def key(self, pitch: int) -> KeySpec:
        """The key for a MIDI pitch; KeyError outside the range."""
        i = pitch - self.keys[0].pitch
        if not 0 <= i < len(self.keys):
            raise KeyError(pitch)
        return self.keys[i]

    def has_pitch(self, pitch: int) -> bool:
        return self.lowest <= pitch <= self.highest

    @property
    def actuator_count(self) -> int:
        return len(self.keys) + (1 if self.pedal else 0) + (1 if self.sync_click else 0)

    @property
    def spec_hash(self) -> str:
        """sha256 over the canonical content (not the file's formatting)."""
        return spec_hash(self)


def _jsonable(obj: object) -> object:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _content(obj: object) -> object:
    """asdict() without the derived ``actuators`` field (so hashes stay as they were)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        # derived fields (init=False: the actuator map, lookup tables) are not content
        return {
            f.name: _content(getattr(obj, f.name))
            for f in fields(obj)
            if f.init and f.metadata.get("hashed", True)
            # a field added later hashes only when set: older specs keep their hash
            and not (f.metadata.get("hashed") == "if set" and getattr(obj, f.name) is None)
        }
    if isinstance(obj, list | tuple):
        return [_content(v) for v in obj]
    return obj


def spec_hash(spec: object) -> str:
    """sha256 (16 hex digits) of the spec's content. The piano's hash is what it was
    before specs named their family, so existing calibration files still match."""
    blob = json.dumps(_jsonable(_content(spec)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
