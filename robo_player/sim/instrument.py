"""The simulated piano as an instrument: output changes in, what the microphone heard out.

:class:`SimulatedInstrument` holds the hidden truth, the physics and the microphone of
one session at the piano. ``sim://`` feeds it the plan's expansion; the simulated MCUs
(``vmcu://``, ``fw-host://``, ``fw-avr://``) feed it their firmware's actuation trace.
Both go through :meth:`SimulatedInstrument.hear` (the driver's
:class:`~robo_player.driver.backends.Instrument` interface), so the physics reads what
the outputs did, never what the plan asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..actuation import OutputColumns
from ..errors import TransportError
from ..performance import HeardNote, Performance, Progress
from ..spec.model import PianoSpec
from .live import LiveEar, LiveRecording
from .physics import EventColumns, PianoPhysics
from .sensor import SENSOR_OPTIONS, Microphone, microphone_from_options
from .spread import SPREAD_DEFAULT, SPREAD_DRAW_MAX
from .truth import COPPER_TEMPCO_PER_K, Truth

# the options every simulated device takes for its instrument
INSTRUMENT_OPTIONS = ("truth_seed", "truth", "heating", "spread", "spread_draw", *SENSOR_OPTIONS)


class SimulatedInstrument:
    """The piano of ``spec`` with hidden ``truth``, heard through ``microphone``."""

    def __init__(
        self, spec: PianoSpec, truth: Truth, microphone: Microphone, heating: bool = False,
        spread: bool = SPREAD_DEFAULT, spread_draw: int = 0,
    ) -> None:
        self.spec = spec
        self._truth = truth  # hidden: only the simulator may read it
        self.physics = PianoPhysics(spec, truth, tempco_per_k=COPPER_TEMPCO_PER_K if heating else 0.0,
                                    spread=spread, spread_draw=spread_draw)  # fmt: skip
        self.microphone = microphone
        self._ear: LiveEar | None = None  # this stream's live hearing (firmware ports)
        self._recording: LiveRecording | None = None  # ... and its room's recording

    @property
    def settle_us(self) -> int:
        """How long after its start a strike's outcome is settled: its pulse (at most the
        spec's longest) and the supply during the part of it that pushes the hammer."""
        truth = self._truth
        return max([self.spec.strike.max_pulse_us, *(truth.key(k.pitch).pulse_full_us for k in self.spec.keys)])

    def hear(self, outputs: OutputColumns, progress: Progress | None = None) -> Performance:
        """Play the output changes (performance time of this stream) and listen."""
        self._ear, self._recording = None, None  # the stream is over
        perf, notes = self.physics.run_columns(EventColumns.from_outputs(outputs), progress)
        self.microphone.listen(perf, notes, self.physics.clicks_us)
        return perf

    def hear_so_far(self, outputs: OutputColumns, now_us: int) -> list[HeardNote]:
        """While a stream runs: the notes not heard yet that the microphone hears by
        ``now_us``, from the output changes so far (performance time; sim/live.py)."""
        if self._ear is None:
            self._ear = LiveEar(self.physics, None, self.settle_us)
        cut = now_us - max(self.microphone.heard_delay_us, self.settle_us)
        return self.microphone.hear_live(self._ear.sounded_outputs(outputs, now_us, cut))

    @property
    def audio_rate(self) -> int | None:
        """The sample rate of :meth:`audio_so_far`'s blocks; None without a room microphone
        (``sensor=notes``)."""
        room = self.microphone.room
        return None if room is None else room.sample_rate

    def audio_so_far(self, outputs: OutputColumns, now_us: int) -> list[tuple[Any, float]] | None:
        """While a stream runs: the room microphone's new blocks (sim/live.py
        ``LiveRecording``: 512 samples, each with its capture time on the stream's clock,
        the card's constant error and jitter on it), from the output changes so far
        (performance time, final up to ``now_us``); the blocks one after another are the
        take the drain's :meth:`hear` records. None without a room microphone."""
        room = self.microphone.room
        if room is None:
            return None
        if self._ear is None:
            self._ear = LiveEar(self.physics, None, self.settle_us)
        if self._recording is None:
            self._recording = LiveRecording(self._ear, room, self.microphone.takes, self.settle_us,
                                            self.microphone.render)
        return self._recording.blocks(outputs, now_us)

    def energised(self) -> list[int]:
        return self.physics.energised()


def _int_opt(url: str, name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TransportError(f"{url}: option {name}={value!r} must be an integer")
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as err:
        raise TransportError(f"{url}: option {name}={value!r} must be an integer") from err


def instrument_from_options(url: str, spec: PianoSpec, opts: dict[str, Any]) -> SimulatedInstrument:
    """The instrument the options ask for; takes (pops) its options out of ``opts``.

    ``truth_seed`` (int, default 0): draw the hidden truth from this seed; ``truth``
    (path, or a :class:`Truth`): read it instead; ``sensor_seed`` (int, default 0),
    ``timing_sd_us`` (default 200), ``loudness_sd`` (default 1): the microphone;
    ``heating`` (0 or 1, default 0): warm coils strike later and softer (copper's R(T));
    ``spread`` (0 or 1, default 1, ``SPREAD_DEFAULT``): each strike's own deviation (sim/spread.py);
    ``spread_draw`` (int, 0..``SPREAD_DRAW_MAX``, default 0: the truth's own): the strokes'
    deviations drawn again (``draw_seed``; needs ``spread=1``).
    """
    heating = _int_opt(url, "heating", opts.pop("heating", 0))
    if heating not in (0, 1):
        raise TransportError(f"{url}: option heating={heating} (allowed: 0 or 1)")
    spread = spread_option(url, opts)
    spread_draw = _int_opt(url, "spread_draw", opts.pop("spread_draw", 0))
    if not 0 <= spread_draw <= SPREAD_DRAW_MAX:
        raise TransportError(f"{url}: option spread_draw={spread_draw} (allowed: 0..{SPREAD_DRAW_MAX})")
    if spread_draw and not spread:
        raise TransportError(f"{url}: option spread_draw={spread_draw} needs spread=1 (this is spread=0)")
    truth = opts.pop("truth", None)
    truth_seed = opts.pop("truth_seed", None)
    if truth is not None and truth_seed is not None:
        raise TransportError(f"{url}: give either truth or truth_seed, not both")
    if isinstance(truth, Truth):
        the_truth = truth
        where = "<truth>"
    elif truth is not None:
        where = str(truth)
        if not isinstance(truth, str | Path):
            raise TransportError(f"{url}: option truth={truth!r} must be a file path")
        the_truth = Truth.load(truth)  # SpecError naming the file on any fault
    else:
        seed = 0 if truth_seed is None else _int_opt(url, "truth_seed", truth_seed)
        the_truth = Truth.draw(spec, seed)
        where = f"truth_seed={seed}"
    the_truth.check_for(spec, where)
    mic = microphone_from_options(url, opts)  # its options: robo_player/sim/sensor.py
    return SimulatedInstrument(spec, the_truth, mic, heating=bool(heating), spread=spread, spread_draw=spread_draw)


def spread_option(url: str, opts: dict[str, Any]) -> bool:
    """The ``spread`` option (0 or 1, default ``SPREAD_DEFAULT``), taken out of ``opts``."""
    spread = _int_opt(url, "spread", opts.pop("spread", int(SPREAD_DEFAULT)))
    if spread not in (0, 1):
        raise TransportError(f"{url}: option spread={spread} (allowed: 0 or 1)")
    return bool(spread)


__all__ = ["INSTRUMENT_OPTIONS", "SimulatedInstrument", "instrument_from_options", "spread_option"]
