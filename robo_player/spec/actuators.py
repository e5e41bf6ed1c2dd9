"""The actuator map: what a spec compiles to for every layer below the planner.

A spec names its instrument family and describes it in that family's terms (the
piano's keys and pedal). The driver, the firmware configuration, the simulator and the
shared rules (:mod:`robo_player.planner.rules`) see only this map: actuator index ->
kind, output (board and pin/channel on it) and limits.

Levels are PWM counts of the actuator's own resolution, ``0..pwm_max`` with
``pwm_max = 2**pwm_bits - 1``; currents in A, times in µs.

    from robo_player.spec import load_spec
    amap = load_spec("piano-88-grand").actuators
    amap[88]                  # Actuator(index=88, kind=COIL, board='pca5', output=8, role='pedal', ...)
    len(amap), amap.count     # actuators, firmware slots (highest index + 1)
    amap.by_role("key:60")    # the actuator of middle C
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from ..errors import SpecError
from .model import DriverKind

if TYPE_CHECKING:
    from .model import PianoSpec

__all__ = ["Actuator", "ActuatorKind", "ActuatorMap", "piano_actuators"]


class ActuatorKind(Enum):
    COIL = "coil"  # a solenoid: PWM level, pulse then hold, heats up
    POSITIONER = "positioner"  # moves to a position in its travel (servo, stepper)


@dataclass(frozen=True, slots=True)
class Actuator:
    """One actuator: where it is wired and what it may do."""

    index: int  # global actuator index (the plan's and the wire's ``actuator``)
    kind: ActuatorKind
    board: str  # DriverBoard.id
    board_kind: DriverKind
    output: int  # pin/channel on its board (index minus the board's first index)
    pwm_bits: int  # level resolution: levels are counts 0..2**pwm_bits-1
    role: str  # what it does in its family: "key:60", "pedal", ...
    max_on_us: int  # longest one energisation (pulse + hold); the firmware cuts it
    max_pulse_us: int  # longest full-drive pulse before it must drop to hold
    hold_duty: float  # fraction of full drive that holds it (0..1)
    full_a: float  # current at full drive, A (supply_v / coil_ohm for a coil)
    on_supply: bool  # counts in the shared supply budget (the pedal has its own supply)
    heat_k_per_s: float  # heating rate at full drive, K/s (V²/R/C); dT/dt = d²·this − T/tau
    tau_s: float  # thermal time constant, s
    max_rise_k: float  # allowed temperature rise over ambient, K
    i2c_address: int | None = None  # of its board, for PCA9685 outputs
    travel_us: int = 0  # positioners: time for the full travel; 0 for coils
    travel_mm: float = 0.0  # positioners: the travel limit (position counts span 0..this)
    max_speed_mm_s: float = 0.0  # positioners: trapezoidal profile's top speed
    accel_mm_s2: float = 0.0  # positioners: ... and its acceleration
    settle_us: int = 0  # positioners: after a move, before the load may act

    @property
    def pwm_max(self) -> int:
        return (1 << self.pwm_bits) - 1

    @property
    def hold_counts(self) -> int:
        """The hold level in counts (as the planner commands it)."""
        return round(self.hold_duty * self.pwm_max)


@dataclass(frozen=True, slots=True)
class ActuatorMap:
    """Actuators by index, with the limits they share.

    ``entries`` are sorted by index; indices may have gaps (``count`` is the highest
    index + 1, the firmware's slot count). ``map[i]`` is the actuator with index ``i``
    (KeyError if none). Two actuators on one index, or on one output of one board, are
    a :class:`~robo_player.errors.SpecError` naming ``source`` and both roles.
    """

    entries: tuple[Actuator, ...]
    supply_a: float  # shared supply current limit, A
    max_concurrent: int  # strike pulses that may run at once
    source: str = "<actuators>"
    _by_index: dict[int, Actuator] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_index: dict[int, Actuator] = {}
        outputs: dict[tuple[str, int], Actuator] = {}
        for a in self.entries:
            if a.index < 0:
                raise SpecError(
                    f"{self.source}: actuators[{a.role}].index: {a.index} is out of range "
                    "(allowed >= 0)"
                )
            other = by_index.get(a.index)
            if other is not None:
                raise SpecError(
                    f"{self.source}: actuators[{a.role}].index: {a.index} is already used by "
                    f"{other.role}"
                )
            by_index[a.index] = a
            where = (a.board, a.output)
            other = outputs.get(where)
            if other is not None:
                raise SpecError(
                    f"{self.source}: actuators[{a.role}].output: {a.board}:{a.output} is already "
                    f"used by {other.role} (actuator {other.index}); each board output drives "
                    "one actuator"
                )
            outputs[where] = a
        ordered = tuple(sorted(self.entries, key=lambda a: a.index))
        object.__setattr__(self, "entries", ordered)
        object.__setattr__(self, "_by_index", by_index)

    def __getitem__(self, index: int) -> Actuator:
        try:
            return self._by_index[index]
        except KeyError:
            raise KeyError(index) from None

    def get(self, index: int) -> Actuator | None:
        return self._by_index.get(index)

    def __contains__(self, index: object) -> bool:
        return index in self._by_index

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Actuator]:
        return iter(self.entries)

    @property
    def count(self) -> int:
        """Firmware slots the map needs: the highest index + 1 (0 when empty)."""
        return self.entries[-1].index + 1 if self.entries else 0

    def by_role(self, role: str) -> Actuator:
        for a in self.entries:
            if a.role == role:
                return a
        raise KeyError(role)

    def of_kind(self, kind: ActuatorKind) -> tuple[Actuator, ...]:
        return tuple(a for a in self.entries if a.kind is kind)


def _first_index(spec: PianoSpec) -> dict[str, int]:
    """Board id -> its first global index (boards own consecutive blocks in order)."""
    out: dict[str, int] = {}
    first = 0
    for b in spec.boards:
        out[b.id] = first
        first += b.channels
    return out


def piano_actuators(spec: PianoSpec, source: str | None = None) -> ActuatorMap:
    """The piano's actuator map: one coil per key (``key:PITCH``), the pedal (``pedal``),
    the hearing's click (``sync_click``)."""
    first = _first_index(spec)
    boards = {b.id: b for b in spec.boards}
    p, th = spec.power, spec.thermal
    full_a = p.supply_v / p.coil_ohm
    heat = p.supply_v * p.supply_v / p.coil_ohm / th.coil_heat_capacity_j_per_k

    def coil(
        index: int, board: str, bits: int, role: str, hold: float, on_supply: bool
    ) -> Actuator:
        b = boards.get(board)
        return Actuator(
            index=index,
            kind=ActuatorKind.COIL,
            board=board,
            board_kind=b.kind if b is not None else DriverKind.DIRECT,
            output=index - first.get(board, 0),
            pwm_bits=bits,
            role=role,
            max_on_us=th.max_on_us,
            max_pulse_us=spec.strike.max_pulse_us,
            hold_duty=hold,
            full_a=full_a,
            on_supply=on_supply,
            heat_k_per_s=heat,
            tau_s=th.coil_tau_s,
            max_rise_k=th.coil_max_rise_k,
            i2c_address=b.i2c_address if b is not None else None,
        )

    entries: list[Actuator] = [
        coil(k.channel, k.board, k.pwm_bits, f"key:{k.pitch}", spec.strike.hold_duty, True)
        for k in spec.keys
    ]
    if spec.pedal is not None:
        pd = spec.pedal
        entries.append(coil(pd.channel, pd.board, pd.pwm_bits, "pedal", pd.hold_duty, False))
    if spec.sync_click is not None:  # a piezo: off its own small supply, never held
        sc = spec.sync_click
        entries.append(coil(sc.channel, sc.board, sc.pwm_bits, "sync_click", 0.0, False))
    return ActuatorMap(
        tuple(entries),
        supply_a=p.supply_a,
        max_concurrent=p.max_simultaneous_strikes,
        source=source or f"spec {spec.name!r}",
    )


def actuator_map(entries: Iterable[Actuator], supply_a: float, max_concurrent: int,
                 source: str = "<actuators>") -> ActuatorMap:  # fmt: skip
    """An ActuatorMap from any iterable of actuators (validated as the class says)."""
    return ActuatorMap(tuple(entries), supply_a, max_concurrent, source)
