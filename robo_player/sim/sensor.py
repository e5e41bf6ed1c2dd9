"""The simulated microphone: what the calibration and the reports get to hear.

Two sensors in one (option ``sensor`` of every simulated device):

- ``audio`` (the default of the piano's simulated devices): a microphone in the room. Each stream's
  :class:`~robo_player.performance.Performance` carries ``audio``, a
  :class:`~.room.RoomTake` of the exact sounded notes through the :class:`~.room.Room`
  (reverb, noise at ``snr_db``, gain, an unknown clock offset and drift). The
  calibrator hears through it, by the detector of :mod:`robo_player.hearing`, exactly
  as with a real microphone. The room records the piano in its rich voice (the
  default since session 19, the nearer to a real piano), or with ``voice=plain`` in the
  plainer, easier one (:mod:`.audio`, docs/simulator.md "Voices"). ``perf.heard`` is still filled as below: reports and the
  piano roll read it; the calibrator does not when there is audio.
- ``notes`` (``sim://?sensor=notes``): the note-level sensor only
  (``perf.audio`` is None), for comparison and for what does not test hearing. It reports each onset with Gaussian timing noise (0.2 ms s.d.) and each loudness with
Gaussian noise (1 MIDI velocity unit s.d.); damping times and the sensed pedal get the
same timing noise. One seeded generator per microphone, so a session is reproducible
and repeated takes of the same plan differ as they would on a real piano.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import TransportError
from ..performance import HeardNote, Performance
from .audio import DEFAULT_VOICE, RENDERERS, Voice, render_audio
from .physics import SoundedNotes
from .room import (
    GAIN_DB,
    GAIN_DB_RANGE,
    MOVE_GAIN_DB_MAX,
    POSITION_GAIN_DB,
    PREDELAY_RANGE_S,
    REVERB_PREDELAY_S,
    SAMPLE_RATES,
    Renderer,
    Room,
    RoomTake,
)

TIMING_SD_US = 200.0
LOUDNESS_SD = 1.0
# While a stream runs, a note is heard this long after its onset (``heard_so_far``):
# the detector's owner test reads 4096 samples after an onset (85 ms at 48 kHz, plus
# 3 ms from it) and a sound card delivers its audio in blocks (~10 ms).
HEARD_DELAY_US = 100_000
HEARD_DELAY_MIN_US = 50_000  # >= every strike's pulse (40 ms): what is heard has settled
SENSORS = ("audio", "notes")
# a microphone in the room, as on a real piano (issue 11 §1); sim://?sensor=notes keeps the
# note-level sensor (docs/hearing.md has both calibrations' figures)
DEFAULT_SENSOR = "audio"
# options of every simulated device that configure its microphone
SENSOR_OPTIONS = (
    "sensor_seed", "timing_sd_us", "loudness_sd", "sensor", "snr_db", "sample_rate",
    "offset_s", "drift_ppm", "rt60_s", "gain_db", "heard_delay_ms", "voice", "tail", "move_gain_db",
    "predelay_ms",
)
TAILS = ("take", "room")
# the reverb's tail once for the room (session 24): a real room's response from the piano
# to a fixed microphone is the same on every take; ``tail=take`` draws one per take, as
# the simulator did before, which averaged each key's room colour over a calibration's
# takes and flattered its velocity figures (docs/calibration.md, "Session 24, velocity")
DEFAULT_TAIL = "room"


class Microphone:
    """Adds sensor noise to the exact notes of the physics."""

    def __init__(
        self,
        seed: int | None = 0,
        timing_sd_us: float = TIMING_SD_US,
        loudness_sd: float = LOUDNESS_SD,
        room: Room | None = None,
        heard_delay_us: int = HEARD_DELAY_US,
    ) -> None:
        if timing_sd_us < 0 or loudness_sd < 0:
            raise ValueError(
                f"sensor noise must be >= 0 (timing_sd_us={timing_sd_us}, loudness_sd={loudness_sd})"
            )
        self._rng = np.random.default_rng(seed)
        self.timing_sd_us = float(timing_sd_us)
        self.loudness_sd = float(loudness_sd)
        self.room = room  # None: the note-level sensor only; the room heard from the microphone's place now
        self._room_at_first = room  # ... from where it stood first (place 0: :meth:`move_to`)
        self.render: Renderer = render_audio  # the instrument's voice the room records (the guitar sets its own)
        self._takes = 0
        # what is heard while a stream runs: its own noise, so that listening live does
        # not change what the stream's drain reports
        self.heard_delay_us = int(heard_delay_us)
        self._live_rng = np.random.default_rng(None if seed is None else [int(seed), 1])

    @property
    def position(self) -> int:
        """The microphone's place in the room now (0: where it stood first)."""
        return 0 if self.room is None else self.room.position

    def move_to(self, position: int) -> None:
        """Move the microphone to place ``position`` (sim/room.py ``Room.at_position``:
        its own tail and gain there); the takes from here on are recorded there. The
        note-level sensor has no place: nothing changes."""
        if self._room_at_first is not None:
            self.room = self._room_at_first.at_position(position)

    @property
    def takes(self) -> int:
        """How many takes this microphone has recorded (the next one's number)."""
        return self._takes

    def hear(self, notes: Sequence[HeardNote]) -> list[HeardNote]:
        """Noisy copies of ``notes``, sorted by (time, pitch)."""
        n = len(notes)
        ends = [h.end_us for h in notes]
        cols = SoundedNotes(
            t_us=np.fromiter((h.t_us for h in notes), dtype=np.int64, count=n),
            pitch=np.fromiter((h.pitch for h in notes), dtype=np.int64, count=n),
            velocity=np.fromiter((h.velocity for h in notes), dtype=np.float64, count=n),
            end_us=np.array([np.inf if e is None else e for e in ends], dtype=np.float64),
        )
        return self.hear_columns(cols)

    def hear_live(self, notes: SoundedNotes) -> list[HeardNote]:
        """Notes heard while the stream runs (:meth:`hear_columns` with the live noise)."""
        return self.hear_columns(notes, self._live_rng)

    def hear_columns(self, notes: SoundedNotes, rng: np.random.Generator | None = None) -> list[HeardNote]:
        """Noisy heard notes from the physics' columns, sorted by (time, pitch)."""
        n = len(notes)
        if n == 0:
            return []
        rng = self._rng if rng is None else rng
        t = notes.t_us + np.rint(rng.normal(0.0, self.timing_sd_us, size=n)).astype(np.int64)
        v = np.maximum(0.0, notes.velocity + rng.normal(0.0, self.loudness_sd, size=n))
        e = notes.end_us + np.rint(rng.normal(0.0, self.timing_sd_us, size=n))
        e = np.maximum(e, t)  # inf stays inf: not damped while listening
        o = np.lexsort((notes.pitch, t))
        return SoundedNotes(t[o], notes.pitch[o], v[o], e[o]).to_heard()

    def listen(
        self, perf: Performance, notes: SoundedNotes | None = None, clicks_us: Sequence[int] = (),
        buzzes_us: Sequence[int] = (),
    ) -> Performance:
        """``perf`` with its notes (``notes``, or else ``perf.heard``) and pedal heard
        through this microphone (in place). ``clicks_us``: when the sync click sounded
        (from its output's on-edges: the physics); the room's recording has them.
        ``buzzes_us``: when a buzzed note sounded (the guitar's rattle)."""
        if self.room is not None:
            exact = list(perf.heard) if notes is None else notes.to_heard()
            perf.audio = RoomTake(self.room, exact, list(perf.pedal), self._takes, list(clicks_us),
                                  self.render, list(buzzes_us))  # fmt: skip
            self._takes += 1
        perf.heard = self.hear(perf.heard) if notes is None else self.hear_columns(notes)
        if perf.pedal:
            dp = np.rint(self._rng.normal(0.0, self.timing_sd_us, size=len(perf.pedal))).astype(np.int64)
            perf.pedal = sorted((t + int(e), v) for (t, v), e in zip(perf.pedal, dp.tolist(), strict=True))
        return perf


def _num(url: str, name: str, value: object, lo: float, hi: float) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise TransportError(f"{url}: option {name}={value!r} must be a number in {lo:g}..{hi:g}") from err
    if not lo <= x <= hi:
        raise TransportError(f"{url}: option {name}={value!r} out of range (allowed: {lo:g}..{hi:g})")
    return x


def microphone_from_options(url: str, opts: dict[str, object]) -> Microphone:
    """The microphone the options ask for; takes (pops) its options out of ``opts``.

    ``sensor_seed`` (int, 0), ``timing_sd_us`` (200), ``loudness_sd`` (1): the
    note-level sensor; ``heard_delay_ms`` (100; 50..2000): a note is heard live this
    long after its onset (``heard_so_far``); ``sensor`` (``audio`` | ``notes``, default
    ``audio``); for audio,
    ``snr_db`` (30), ``sample_rate`` (48000 or 44100), ``rt60_s`` (0.3; 0: no reverb), ``gain_db`` (-24; the
    microphone's gain, -60..0 dB: unknown to the host side, the calibrator fits the
    take's level, docs/hearing.md), ``offset_s`` and ``drift_ppm`` (default: drawn
    from the seed, unknown to the host side), ``voice`` (``plain`` | ``rich``, default
    ``rich``: the piano's voice the room records, sim/audio.py), ``tail`` (``room`` |
    ``take``, default ``room``: the reverb's tail drawn once for the room, as a real
    room's is the same on every take, or anew for every take: sim/room.py
    ``Room.fixed_tail``), ``move_gain_db`` (3; 0..12: how far moving the microphone to
    another place, ``move_microphone``, changes its gain at most: sim/room.py
    ``Room.at_position``), ``predelay_ms`` (4; 0.5..20: the first reflection's delay after
    the direct sound, sim/room.py ``Room.predelay_s``)."""
    seed_raw = opts.pop("sensor_seed", 0)
    try:
        seed = int(seed_raw)  # type: ignore[call-overload]
    except (TypeError, ValueError) as err:
        raise TransportError(f"{url}: option sensor_seed={seed_raw!r} must be an integer") from err
    timing = _num(url, "timing_sd_us", opts.pop("timing_sd_us", TIMING_SD_US), 0.0, 1e6)
    loud = _num(url, "loudness_sd", opts.pop("loudness_sd", LOUDNESS_SD), 0.0, 127.0)
    delay = _num(url, "heard_delay_ms", opts.pop("heard_delay_ms", HEARD_DELAY_US / 1000),
                 HEARD_DELAY_MIN_US / 1000, 2000.0)
    kind = str(opts.pop("sensor", DEFAULT_SENSOR))
    if kind not in SENSORS:
        raise TransportError(f"{url}: option sensor={kind!r} (allowed: {', '.join(SENSORS)})")
    audio_opts = {k: opts.pop(k) for k in ("snr_db", "sample_rate", "offset_s", "drift_ppm", "rt60_s", "gain_db", "voice",
                                            "tail", "move_gain_db", "predelay_ms") if k in opts}  # fmt: skip
    if kind == "notes":
        if audio_opts:
            raise TransportError(
                f"{url}: option {sorted(audio_opts)[0]} needs sensor=audio (this is sensor=notes)"
            )
        return Microphone(seed, timing, loud, heard_delay_us=int(delay * 1000))
    sr = _num(url, "sample_rate", audio_opts.get("sample_rate", 48000), 1, 1e6)
    if int(sr) not in SAMPLE_RATES:
        raise TransportError(f"{url}: option sample_rate={sr:g} (allowed: 44100, 48000)")
    tail = str(audio_opts.get("tail", DEFAULT_TAIL))
    if tail not in TAILS:
        raise TransportError(f"{url}: option tail={tail!r} (allowed: {', '.join(TAILS)})")
    room = Room(
        sample_rate=int(sr),
        snr_db=_num(url, "snr_db", audio_opts.get("snr_db", 30.0), -20.0, 120.0),
        rt60_s=_num(url, "rt60_s", audio_opts.get("rt60_s", 0.3), 0.0, 3.0),
        gain_db=_num(url, "gain_db", audio_opts.get("gain_db", GAIN_DB), *GAIN_DB_RANGE),
        offset_s=None if "offset_s" not in audio_opts else _num(url, "offset_s", audio_opts["offset_s"], 0, 10),
        drift_ppm=None if "drift_ppm" not in audio_opts else _num(url, "drift_ppm", audio_opts["drift_ppm"], -1000, 1000),
        seed=seed,
        fixed_tail=tail == "room",
        move_gain_db=_num(url, "move_gain_db", audio_opts.get("move_gain_db", POSITION_GAIN_DB), 0.0, MOVE_GAIN_DB_MAX),
        predelay_s=_num(url, "predelay_ms", audio_opts.get("predelay_ms", REVERB_PREDELAY_S * 1000),
                        *(1000 * x for x in PREDELAY_RANGE_S)) / 1000,
    )
    mic = Microphone(seed, timing, loud, room, heard_delay_us=int(delay * 1000))
    voice = str(audio_opts.get("voice", DEFAULT_VOICE.value))
    try:
        mic.render = RENDERERS[Voice(voice)]  # the piano's voice (sim/audio.py; the guitar sets its own)
    except ValueError as err:
        allowed = ", ".join(v.value for v in Voice)
        raise TransportError(f"{url}: option voice={voice!r} (allowed: {allowed})") from err
    return mic
