"""The ``sim://`` device: a stream of commands in, what the simulated microphone heard out.

Opened through the port registry (``open_port("sim://?truth_seed=3", spec)``) or
directly with :func:`open_sim`. Options (query string or keyword arguments; query values
arrive as strings):

- ``truth_seed`` (int, default 0): draw the hidden truth from this seed;
- ``truth`` (path, or a :class:`~robo_player.sim.truth.Truth`): read it instead;
- ``sensor_seed`` (int, default 0): seed of the microphone's noise;
- ``spread`` (0 or 1, default 1) and ``spread_draw`` (int, default 0: the truth's own):
  the strikes' own spread and which draw of it (sim/spread.py ``draw_seed``);
- ``sensor`` (``audio``, the default: a microphone in the room, the calibrator hears
  through the detector; ``notes``: the note-level sensor only), and the room's options
  (:func:`~.sensor.microphone_from_options`, docs/hearing.md);
- ``timing_sd_us`` (float >= 0, default 200), ``loudness_sd`` (float >= 0, default 1):
  the note-level sensor's noise (``perf.heard``, which reports read with either sensor).

The stream (:class:`~robo_player.driver.ports.Device`): ``submit`` checks the commands
against the actuator map and keeps them; ``advance(t_us)`` moves the device's
performance time on (a command submitted for a time already passed is *late*: it never
plays, and is counted so); ``drain`` expands the stream through the one pulse/hold
expansion and plays it on the :class:`~.instrument.SimulatedInstrument`, the same one
the simulated MCUs play their traces on, after the firmware's per-coil limits (max
on-time, duty: :mod:`~.limits`), so that it never plays what a firmware would cut or
refuse (counted ``played_cut_off`` and ``refused_duty``, as the firmware ports count
them). There is no link, so nothing else can go wrong on the way.

While a stream runs, ``heard_so_far()`` gives the notes the microphone has heard up to
the stream's performance time now (``advance``): each note ``heard_delay_ms`` (100)
after its onset, from what the physics did with the commands due by then
(:mod:`.live`), with the sensor's noise; the drain's performance is unchanged by it.
The live ear plays what the firmware would: the stream runs through the same per-coil
limits as at the drain, incrementally as it becomes due (:class:`~.limits.LiveLimits`),
so a strike the limits refuse is never heard live, and one they cut is heard as the
drain plays it.

With the room's microphone (``sensor=audio``), ``audio_so_far()`` hands over the
recording while the stream runs, as a sound card does: blocks of 512 samples with the
MCU time each was captured at (a constant error and jitter on it), every sample the
drain's ``perf.audio`` has (:class:`~.room.LiveTake`); the closed loop hears through it
(robo_player/hearing/live_audio.py).

One device is one session at the piano: each stream starts from where the previous
one ended (coils keep their heat, keys left down stay down, a burnt coil stays burnt),
1 s of virtual time after the previous stream's last event. Performance times are
relative to the start of each stream, as on a real device.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult

from ..actuation import actuator_pwm_max, check_commands, check_order
from ..driver.options import url_of, with_query
from ..driver.ports import StreamDevice
from ..errors import TransportError
from ..performance import HeardNote, Performance, Progress
from ..plan import Command, Op
from ..spec.model import PianoSpec
from .instrument import INSTRUMENT_OPTIONS, SimulatedInstrument, instrument_from_options
from .limits import LiveLimits, apply_limits
from .live import LiveEar, LiveRecording
from .truth import Truth

log = logging.getLogger(__name__)


class SimDevice(StreamDevice):
    """A simulated piano behind the :class:`~robo_player.driver.ports.Device` protocol."""

    def __init__(self, url: str, spec: PianoSpec, instrument: SimulatedInstrument) -> None:
        self.url = url
        self.spec = spec
        self.instrument = instrument
        self._pwm_max = actuator_pwm_max(spec)
        self._cmds: list[Command] = []  # this stream's commands that will play
        self._late = 0  # ... and those submitted for a time already passed (not played)
        self._late_release = 0  # late releases (they still run)
        self._last_t = -1  # t_us of the last command submitted
        self._first_t = 0  # ... and of the stream's first
        self._submitted = 0
        self._now_us = -math.inf  # performance time the stream has reached
        self.last_performance: Performance | None = None
        self._ear: LiveEar | None = None  # this stream's live hearing (heard_so_far)
        self._live_limits: LiveLimits | None = None  # ... and the firmware's limits on it
        self._heard_live: list[HeardNote] = []
        self._take: LiveRecording | None = None  # this stream's recording while it runs (audio_so_far)
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def streaming(self) -> bool:
        return self._submitted > 0

    @property
    def _truth(self) -> Truth:
        """The hidden truth (tests and the simulator only; never the calibrator)."""
        return self.instrument._truth

    def energised(self) -> list[int]:
        """Actuators whose coil is on at the end of the last stream."""
        return self.instrument.energised()

    def submit(self, commands: Sequence[Command]) -> None:
        self._check_open("submit")
        cmds = list(commands)
        last = self._last_t
        check_commands(cmds, self._pwm_max, self.spec.name, self._submitted)
        last = check_order(cmds, last, self.url, self._submitted)
        first_t = cmds[0].t_us if cmds else 0
        if not self._submitted:
            self._first_t = first_t
        self._submitted += len(cmds)
        self._last_t = last
        if not cmds or first_t >= self._now_us:
            self._cmds.extend(cmds)  # all in time (the usual case)
            return
        for c in cmds:
            if c.t_us >= self._now_us:
                self._cmds.append(c)
            elif c.op is Op.RELEASE:
                # late, but a release still runs, when it arrives (as on the firmware)
                late = Command(int(self._now_us), c.op, c.actuator, note=c.note)
                bisect.insort(self._cmds, late, key=lambda x: x.t_us)  # keep them in time order
                self._late_release += 1
            else:
                self._late += 1

    def advance(self, until_t_us: int) -> None:
        self._check_open("advance")
        if self._submitted:  # performance time starts with the stream's first command
            self._now_us = max(self._now_us, float(until_t_us))

    def now_us(self) -> float | None:
        """The stream's performance time: where ``advance`` took it (None before its
        first command; the start of its first command until the first ``advance``)."""
        if not self._submitted:
            return None
        return self._now_us if self._now_us != -math.inf else float(self._first_t)

    def heard_so_far(self) -> list[HeardNote] | None:
        """The notes heard in this stream up to its performance time now, in the order
        heard (see the module doc); a note is heard ``heard_delay_ms`` after its onset;
        ``end_us`` is None (its damping is not heard yet). None for an instrument that
        cannot be heard live (the guitar's, for now)."""
        self._check_open("heard_so_far")
        if not isinstance(self.instrument, SimulatedInstrument):
            return None
        if not self._submitted or math.isinf(self._now_us):
            return list(self._heard_live)
        mic = self.instrument.microphone
        quiet = self.instrument.settle_us
        if self._ear is None or self._live_limits is None:
            self._ear = LiveEar(self.instrument.physics, self._pwm_max, quiet)
            self._live_limits = LiveLimits(self.spec.actuators, self._pwm_max)
        now = int(self._now_us)
        # the stream as the firmware's limits play it, final up to now - 1 (a command at
        # now may still come); no note heard by now depends on that tick
        played = self._live_limits.advance(self._cmds, now)
        notes = self._ear.sounded(played, now - 1, now - 1 - max(mic.heard_delay_us, quiet))
        self._heard_live += mic.hear_live(notes)
        return list(self._heard_live)

    def move_microphone(self, position: int, positions: int) -> None:
        """Move the room's microphone to place ``position`` of ``positions`` (0-based)
        between streams, as a person would when the calibration asks
        (``calibrate --mic-positions``): the takes from here on hear the room from there,
        its own reverb tail and a gain of its own that the host is not told (sim/room.py
        ``Room.at_position``). Place 0 is where it stood at first. Nothing changes with
        ``sensor=notes`` (no microphone in the room)."""
        self._check_open("move_microphone")
        if not 0 <= position < positions:
            raise TransportError(f"{self.url}: move_microphone: position {position} of {positions} "
                                 f"(allowed: 0..{positions - 1})")  # fmt: skip
        if self._submitted:
            raise TransportError(f"{self.url}: move_microphone: a stream is running (move it between streams)")
        if isinstance(self.instrument, SimulatedInstrument):
            self.instrument.microphone.move_to(position)
            log.debug("%s: the microphone at place %d of %d", self.url, position, positions)

    @property
    def audio_rate(self) -> int | None:
        """The sample rate of :meth:`audio_so_far`'s blocks; None where it gives none."""
        return self.instrument.audio_rate if isinstance(self.instrument, SimulatedInstrument) else None

    def audio_so_far(self) -> list[tuple[Any, float]] | None:
        """The room microphone's new blocks of this stream since the last call, as a sound
        card hands them over: ``(samples (512,) float32 mono, the MCU time in µs its
        first sample was captured at)``, the time with the card's constant error and
        jitter (PortAudio's ``inputBufferAdcTime`` through the driver's clock sync). A
        block comes once every note that sounds in it is decided (the stream's time
        ``now`` past it by the longest strike, ``settle_us``). The samples are the
        drain's ``perf.audio`` (every sample rendered once; sim/live.py ``LiveRecording``).
        None with ``sensor=notes`` (no microphone in the room) or no piano."""
        self._check_open("audio_so_far")
        if self.audio_rate is None:
            return None
        if not self._submitted or math.isinf(self._now_us):
            return []
        mic, quiet = self.instrument.microphone, self.instrument.settle_us
        assert mic.room is not None
        if self._ear is None or self._live_limits is None:
            self._ear = LiveEar(self.instrument.physics, self._pwm_max, quiet)
            self._live_limits = LiveLimits(self.spec.actuators, self._pwm_max)
        if self._take is None:
            # the take the drain will render, in its voice
            self._take = LiveRecording(self._ear, mic.room, mic.takes, quiet, mic.render)
        now = int(self._now_us)
        # final up to now - 1 (a command at now may still come)
        return self._take.blocks(self._live_limits.advance(self._cmds, now), now - 1)

    def drain(self, progress: Progress | None = None) -> Performance:
        self._check_open("drain")
        return self._end(progress)

    def _ending(self, flush: bool) -> tuple[list[Command], int, int, int, int]:
        """The stream's commands as they end: (commands, played, flushed, late,
        late releases). ``flush``: closed before the stream was drained: what was due
        has played, the rest is dropped, and everything goes off now (never before
        performance time 0: a stream advanced only to a negative time has run nothing)."""
        cmds, late, late_rel = self._cmds, self._late, self._late_release
        played, flushed = len(cmds) - late_rel, 0
        if flush:
            due = [c for c in cmds if c.t_us <= self._now_us]
            played, flushed = len(due) - late_rel, len(cmds) - len(due)
            off_at = 0 if math.isinf(self._now_us) else max(0, int(self._now_us))
            off_at = max([off_at, *(c.t_us for c in due)])
            cmds = due + [Command(off_at, Op.RELEASE, a) for a in sorted(self._pwm_max)]
        return cmds, played, flushed, late, late_rel

    def _end(self, progress: Progress | None = None, flush: bool = False) -> Performance:
        cmds, played, flushed, late, late_rel = self._ending(flush)
        self._cmds, self._late, self._late_release = [], 0, 0
        self._submitted, self._now_us, self._last_t = 0, -math.inf, -1
        self._ear, self._live_limits, self._heard_live, self._take = None, None, [], None
        # the firmware's max on-time and duty limits, as every firmware port applies them
        lim = apply_limits(cmds, self.spec.actuators, self._pwm_max)
        perf = self.instrument.hear(lim.outputs, progress)
        counts = {
            "played": played - len(lim.cut_off) - len(lim.refused),
            "played_cut_off": len(lim.cut_off),
            "refused_duty": len(lim.refused),
            "late": late,
            "late_release": late_rel,
            "flushed": flushed,
        }
        if lim.cuts:
            log.info("%s: %d coils cut off by the firmware's limits (first: %s)",
                     self.url, len(lim.cuts), lim.cuts[0])  # fmt: skip
        perf.extra["commands"] = {k: v for k, v in counts.items() if v}
        self.last_performance = perf
        log.debug("%s: played %d commands, heard %d notes", self.url, played, len(perf.heard))
        return perf

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._submitted:
            self._end(flush=True)

    def __enter__(self) -> SimDevice:
        return self

    def __repr__(self) -> str:
        return f"SimDevice({self.url!r}, spec={self.spec.name!r}, open={self._open})"


def open_sim(
    url_parts: SplitResult | str,
    spec: PianoSpec,
    **opts: Any,
) -> SimDevice:
    """Open a simulated piano for ``spec`` (see the module doc for the options)."""
    url = url_of(url_parts)
    if not isinstance(url_parts, str):
        url = f"{url_parts.scheme}://{url_parts.netloc}{url_parts.path}"
        url += f"?{url_parts.query}" if url_parts.query else ""
    opts = {k: v for k, v in opts.items() if v is not None}
    merged = with_query(url_parts, opts) if isinstance(url_parts, str) else opts
    unknown = sorted(set(merged) - set(INSTRUMENT_OPTIONS))
    if unknown:
        raise TransportError(
            f"{url}: unknown option {unknown[0]!r} (allowed: {', '.join(INSTRUMENT_OPTIONS)})"
        )
    if spec.family != "piano":  # the guitar and the bass (robo_player/sim/guitar/)
        from .guitar.device import open_guitar_sim

        return open_guitar_sim(url, spec, merged)  # type: ignore[arg-type]
    return SimDevice(url, spec, instrument_from_options(url, spec, merged))
