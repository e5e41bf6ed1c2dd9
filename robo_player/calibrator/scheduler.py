"""The strike scheduler: one round's strikes placed in time, within the spec's limits.

Each round is one plan in which every key that still needs strikes is struck in
parallel with the others, within the power budget (overlapping pulses and supply
current), each key getting time to return between its strikes and every coil staying
cool (a modelled temperature rise with margins for the truth's spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import rules
from ..plan import Command, Op, Plan
from ..spec.actuators import Actuator
from ..spec.model import PianoSpec
from .strikes import SILENT_LATENCY_US, StrikeResult

# --- schedule ------------------------------------------------------------------------
RETURN_GAP_US = 150_000  # release -> next strike on the same key (key return <= 90 ms)
SETTLE_US = 60_000  # after the last expected onset of a round
RELEASE_MARGIN_US = 40_000  # hold the key this long past its expected contact
STAGGER_US = 2_000  # grid on which strikes are placed
SUPPLY_MARGIN = 0.9  # use at most this fraction of the supply's current limit
THERMAL_MARGIN = 0.5  # keep each coil's modelled rise under this fraction of the limit
# listening: keys the detector could mistake for each other (semitones, octaves) keep
# their predicted onsets this far apart
KIN_INTERVALS = (1, 2, 5, 7, 12, 19, 24)
KIN_GAP_US = 250_000
# the truth's coil heat capacity and time constant may differ from the spec's by 10 %:
# model a coil that heats faster and cools slower than the spec says
HEAT_CAPACITY_FACTOR = 0.9
TAU_FACTOR = 1.1


@dataclass(slots=True)
class StrikeRequest:
    pitch: int
    drive: float  # wanted fraction (before quantisation)
    expect_latency_us: float  # for the release time; SILENT_LATENCY_US if unknown
    probe: ProbeRequest | None = None  # a key-return probe to strike right after this one
    onset_us: float = math.nan  # the predicted latency (the key's fit), nan if unknown
    soonest_us: float = 0.0  # listening: its onset comes no sooner than this after the command (0: unknown)


@dataclass(slots=True)
class ProbeRequest:
    """A strike ``gap_us`` after the release of the strike it follows."""

    gap_us: int
    drive: float
    expect_latency_us: float
    onset_us: float = math.nan  # the predicted latency (its slowest), nan if unknown


@dataclass(slots=True)
class CoilHeat:
    temp_k: float = 0.0  # modelled temperature rise
    t_us: int = 0  # time of temp_k


class StrikeScheduler:
    """Places strikes of one round in time within the spec's power and thermal limits.

    The limits are the shared rules of :mod:`robo_player.planner.rules` on the spec's
    actuator map (supply current, concurrent pulses, coil heat), with the calibrator's
    own margins: :data:`SUPPLY_MARGIN` of the supply kept free, the coil's rise kept
    under :data:`THERMAL_MARGIN` of its limit, and a heat model 10 % pessimistic on the
    coil's heat capacity and time constant (the truth may differ by that much) that
    also ignores the cooling during an energisation.

    Time is a grid of ``STAGGER_US`` cells; each cell holds the supply current and the
    number of strike pulses that overlap it (a cell counts if any part is covered).
    """

    def __init__(self, spec: PianoSpec, coils: dict[int, CoilHeat], onset_gap_us: int = 0) -> None:
        self.spec = spec
        # listening through a microphone: no two predicted onsets closer than this, so
        # each strike's attack stands alone in the recording (0: no such rule)
        self.onset_gap_us = onset_gap_us
        self.onsets = np.zeros(4096, dtype=np.int32)  # (cells,) predicted onsets
        self.onsets_of: dict[int, list[int]] = {}  # pitch -> its predicted onsets
        self.coils = coils
        self.amap = spec.actuators
        self.pulse_us = spec.strike.default_pulse_us
        self.hold = spec.strike.hold_duty  # fraction of full drive while held
        self.amps = np.zeros(4096)  # (cells,) supply current, A
        self.pulses = np.zeros(4096, dtype=np.int32)  # (cells,) overlapping pulses

    def _act(self, pitch: int) -> Actuator:
        return self.amap[self.spec.key(pitch).channel]

    def _cells(self, t0: int, t1: int) -> slice:
        i0, i1 = t0 // STAGGER_US, -(-t1 // STAGGER_US)
        if i1 > self.amps.size:
            grow = max(i1, 2 * self.amps.size) - self.amps.size
            self.amps = np.concatenate([self.amps, np.zeros(grow)])
            self.pulses = np.concatenate([self.pulses, np.zeros(grow, dtype=np.int32)])
            self.onsets = np.concatenate([self.onsets, np.zeros(grow, dtype=np.int32)])
        return slice(i0, i1)

    def _onset_free(self, onset_us: int, pitch: int) -> bool:
        """No other predicted onset within the gap, and none of a key the detector could
        take for this one (a semitone or two away, an octave or two) within
        :data:`KIN_GAP_US`: telling those apart takes a long window."""
        if not self.onset_gap_us:
            return True
        cs = self._cells(max(0, onset_us - self.onset_gap_us), onset_us + self.onset_gap_us)
        if self.onsets[cs].any():
            return False
        for dp in KIN_INTERVALS:
            for q in (pitch - dp, pitch + dp):
                if any(abs(o - onset_us) < KIN_GAP_US for o in self.onsets_of.get(q, ())):
                    return False
        return True

    def _mark_onset(self, onset_us: int, pitch: int) -> None:
        if self.onset_gap_us:
            c = self._cells(onset_us, onset_us + 1)
            self.onsets[c.start] += 1
            self.onsets_of.setdefault(pitch, []).append(onset_us)

    def _hold_a(self, act: Actuator, on_us: int) -> float:
        return self.hold * act.full_a if on_us > self.pulse_us else 0.0

    def _fits(self, act: Actuator, temp_k: float, t_us: int, drive: float, on_us: int) -> bool:
        """Whether a strike at ``t_us`` stays within the power budget, given the coil's
        modelled rise ``temp_k`` right before it."""
        if temp_k + self._rise_k(act, drive, on_us) > rules.heat_limit_k(act, 1 - THERMAL_MARGIN):
            return False
        pulse_a = drive * act.full_a
        ps = self._cells(t_us, t_us + self.pulse_us)
        hs = self._cells(t_us + self.pulse_us, t_us + on_us)
        margin = 1 - SUPPLY_MARGIN
        return bool(
            rules.fits_concurrency(self.amap, int(self.pulses[ps].max()) + 1)
            and rules.fits_supply(self.amap, float(self.amps[ps].max()) + pulse_a, margin)
            and (
                hs.stop <= hs.start
                or rules.fits_supply(
                    self.amap, float(self.amps[hs].max()) + self._hold_a(act, on_us), margin
                )
            )
        )

    def _rise_k(self, act: Actuator, drive: float, on_us: int) -> float:
        """Rise (K) one strike adds: the pulse at ``drive``, then the hold, no cooling."""
        pulse_s = self.pulse_us * 1e-6
        hold_s = max(0, on_us - self.pulse_us) * 1e-6
        rise_k = rules.heat_rate(act, drive) * pulse_s + rules.heat_rate(act, self.hold) * hold_s
        return rise_k / HEAT_CAPACITY_FACTOR

    def _tau_us(self, act: Actuator) -> float:
        return act.tau_s * 1e6 * TAU_FACTOR

    def _cooled(self, act: Actuator, coil: CoilHeat, t_us: int) -> float:
        return rules.heat_after(coil.temp_k, max(0, t_us - coil.t_us), 0.0, self._tau_us(act))

    def _commit(self, act: Actuator, coil: CoilHeat, t_us: int, drive: float, on_us: int) -> None:
        coil.temp_k = self._cooled(act, coil, t_us) + self._rise_k(act, drive, on_us)
        coil.t_us = t_us + on_us
        ps = self._cells(t_us, t_us + self.pulse_us)
        hs = self._cells(t_us + self.pulse_us, t_us + on_us)
        self.pulses[ps] += 1
        self.amps[ps] += drive * act.full_a
        if hs.stop > hs.start:
            self.amps[hs] += self._hold_a(act, on_us)

    def place(self, pitch: int, drive: float, on_us: int, earliest: int, onset_us: int = 0) -> int:
        """Earliest grid time >= ``earliest`` for one strike (predicted onset
        ``onset_us`` after it); commits it."""
        coil = self.coils.setdefault(pitch, CoilHeat())
        act = self._act(pitch)
        t = -(-earliest // STAGGER_US) * STAGGER_US
        while not (
            self._onset_free(t + onset_us, pitch) and self._fits(act, self._cooled(act, coil, t), t, drive, on_us)
        ):
            t += STAGGER_US
        self._commit(act, coil, t, drive, on_us)
        self._mark_onset(t + onset_us, pitch)
        return t

    def place_pair(
        self,
        pitch: int,
        first: tuple[float, int],
        second: tuple[float, int],
        gap_us: int,
        earliest: int,
        onsets_us: tuple[int, int] = (0, 0),
    ) -> tuple[int, int]:
        """Earliest grid time for a strike ``first`` = (drive, on_us) followed by a strike
        ``second`` exactly ``gap_us`` after the first one's release; commits both and
        returns their times. The gap is exact (a key-return probe needs it)."""
        coil = self.coils.setdefault(pitch, CoilHeat())
        act = self._act(pitch)
        (d1, on1), (d2, on2) = first, second
        t = -(-earliest // STAGGER_US) * STAGGER_US
        while True:
            t2 = t + on1 + gap_us
            temp1 = self._cooled(act, coil, t)
            free = self._onset_free(t + onsets_us[0], pitch) and self._onset_free(t2 + onsets_us[1], pitch)
            if free and self._fits(act, temp1, t, d1, on1):
                temp2 = rules.heat_after(
                    temp1 + self._rise_k(act, d1, on1), gap_us, 0.0, self._tau_us(act)
                )
                if self._fits(act, temp2, t2, d2, on2):
                    break
            t += STAGGER_US
        self._commit(act, coil, t, d1, on1)
        self._commit(act, coil, t2, d2, on2)
        self._mark_onset(t + onsets_us[0], pitch)
        self._mark_onset(t2 + onsets_us[1], pitch)
        return t, t2


def pwm_level(drive: float, pwm_max: int) -> int:
    return int(min(pwm_max, max(1, round(drive * pwm_max))))


def build_round(
    spec: PianoSpec,
    requests: dict[int, list[StrikeRequest]],
    coils: dict[int, CoilHeat],
    order: list[int],
    onset_gap_us: int = 0,
    absolute: bool = True,
) -> tuple[Plan, list[StrikeResult], int]:
    """One plan striking every requested key; returns (plan, pending strikes, end_us).

    ``absolute`` False (listening without a sync click, docs/hearing.md): strikes are
    predicted at their latest onset (``expect_latency_us``), as the first method was
    measured; True: at their predicted latency (``onset_us``).

    ``onset_gap_us`` > 0 (listening through a microphone): no two strikes' predicted
    onsets (the expected latency, or the spec's nominal curve while unknown) closer."""
    sched = StrikeScheduler(spec, coils, onset_gap_us)
    nom_d = np.asarray(spec.nominal.drive, dtype=float)
    nom_l = np.asarray(spec.nominal.latency_us, dtype=float)

    def predict(drive: float, onset_us: float, latest_us: float = math.inf) -> int:
        if not onset_gap_us:
            return 0
        if not absolute:
            onset_us = latest_us if latest_us < SILENT_LATENCY_US else math.nan
        if math.isfinite(onset_us):  # the key's fit
            return int(onset_us)
        return int(np.interp(drive, nom_d, nom_l, left=nom_l[0], right=nom_l[-1]))

    max_on = spec.thermal.max_on_us
    pulse = spec.strike.default_pulse_us
    cmds: list[Command] = []
    pending: list[StrikeResult] = []
    ready: dict[int, int] = dict.fromkeys(order, 0)
    end_us = 0
    # interleave: the j-th strike of every key before the (j+1)-th of any
    depth = max((len(r) for r in requests.values()), default=0)
    for j in range(depth):
        for pitch in order:
            reqs = requests.get(pitch, [])
            if j >= len(reqs):
                continue
            rq = reqs[j]
            key = spec.key(pitch)
            level = pwm_level(rq.drive, key.pwm_max)
            drive = level / key.pwm_max
            on_us = int(min(max_on, max(pulse, rq.expect_latency_us + RELEASE_MARGIN_US)))
            if onset_gap_us and rq.expect_latency_us >= SILENT_LATENCY_US:
                # listening: a key held down rings on and buries the next onsets; release
                # it soon after its predicted contact (a late hammer still sounds, the
                # damper only cuts it short)
                on_us = int(min(on_us, max(pulse, 1.6 * predict(drive, math.nan) + RELEASE_MARGIN_US)))
            # (level, drive, on_us, expected latency, predicted onset, probe gap or None)
            strikes: list[tuple[int, float, int, float, float, int | None]] = [
                (level, drive, on_us, rq.expect_latency_us, rq.onset_us, None)
            ]
            if rq.probe is None:
                times = [
                    sched.place(pitch, drive, on_us, ready[pitch], predict(drive, rq.onset_us, rq.expect_latency_us))
                ]
            else:
                pr = rq.probe
                level2 = pwm_level(pr.drive, key.pwm_max)
                on2 = int(min(max_on, max(pulse, pr.expect_latency_us + RELEASE_MARGIN_US)))
                strikes.append((level2, level2 / key.pwm_max, on2, pr.expect_latency_us, pr.onset_us, pr.gap_us))
                times = list(
                    sched.place_pair(
                        pitch, (drive, on_us), (level2 / key.pwm_max, on2), pr.gap_us, ready[pitch],
                        (
                            predict(drive, rq.onset_us, rq.expect_latency_us),
                            predict(level2 / key.pwm_max, pr.onset_us, pr.expect_latency_us),
                        ),
                    )
                )
            for t, (lv, dr, on, expect, onset, gap) in zip(times, strikes, strict=True):
                hold = int(round(spec.strike.hold_duty * key.pwm_max)) if on > pulse else 0
                idx = len(pending)
                cmds.append(Command(t, Op.STRIKE, key.channel, lv, pulse, hold, idx))
                cmds.append(Command(t + on, Op.RELEASE, key.channel, 0, 0, 0, idx))
                sr = StrikeResult(pitch, dr, t, probe_gap_us=gap, soonest_us=rq.soonest_us if gap is None else 0.0)
                if onset_gap_us:
                    sr.expect_us = float(predict(dr, onset, expect))
                    known = math.isfinite(onset) if absolute else expect < SILENT_LATENCY_US
                    sr.expect_tol = 0.15 if known else 0.5
                pending.append(sr)
                # next strike on this key: after the latest possible onset and the key's return
                ready[pitch] = max(t + on, t + int(expect) + 1) + RETURN_GAP_US
                end_us = max(end_us, t + max(on, int(expect)) + SETTLE_US)
    plan = Plan(commands=cmds, pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)
    plan.sort()
    return plan, pending, end_us
