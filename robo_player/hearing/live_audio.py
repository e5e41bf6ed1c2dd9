"""Hearing a stream through a microphone while it plays (issue 11 §4, docs/hearing.md
"Closed loop": the live ear).

:class:`LiveAudioEar` takes the sound card's blocks as they arrive (mono samples on the
card's clock, each with the time its first sample was captured: PortAudio's
``inputBufferAdcTime``, on the MCU's clock through the driver's clock sync), the notes
sent so far (MCU time, pitch, intended velocity) and hands back a
:class:`~robo_player.performance.HeardNote` (MCU onset, velocity) for each planned note
once enough audio after it has arrived. It hears them with the detector's plan-known
search, the code ``verify`` uses (:meth:`Detector.detect_intended`), on a window of
recent audio around each batch of notes, never on the whole take (bounded cost per
second of audio), and their loudness through the level path of the calibration
(:mod:`.level`: the take's level fitted on the stream's first notes, cold coils, then held,
anchored on their mean loudness as the calibration's is).

The clock (:class:`AudioClock`): ``mcu_us = A + B * audio_s``. The block timestamps give
``B`` (the card's drift against the MCU, up to +-100 ppm: 60 ms over 10 minutes) and
``A`` but for a constant (the converter's and the driver's latency, unknown); the sync
click's pattern at the stream's start, fitted by :func:`.align.align_clicks`, gives that
constant. Without a click (a spec with no ``sync_click``) the constant is the median
onset error of the stream's first notes: the absolute onsets are then only as good as
the calibration's latency (said in the log). Why the timestamps and not a fit of heard
onsets against planned ones: the loop's corrections are exactly what moves heard
onsets, and warm coils make *every* key late in a loud piece; a fit of onsets would
take that common lateness for clock drift and hide it from the loop. The timestamps do
not hear the piano, so a drift cannot turn into per-key corrections, nor heating into
drift (tests/test_live_audio.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TransportError
from ..matching import ONSET_WINDOW
from ..performance import HeardNote
from ..spec.model import KEY_LOUDNESS_TOLERANCE
from .align import PATTERN_US, align_clicks
from .detector import INFORMED_RING_S, Detector
from .ear_thread import MAX_BEHIND_S, EarWorker, lag_summary
from .level import anchor_level_db, remove_level

log = logging.getLogger(__name__)

STAMP_SD_US = 1_000.0  # what a block's capture time is trusted to (its jitter; PortAudio's can be ms)
STAMP_REJECT_US = 10_000.0  # a capture time this far off the fitted line is an outlier (an xrun)
RATE_SD = 300.0  # µs per audio second: the prior on the rate (nominal 1e6, a card's drift is +-100 ppm)
CLICK_SD_US = 20.0  # a click's fitted onset (hearing/click.py: within ~10 µs)
DECIDE_S = 0.12  # the detector decides a note with this much audio after its search window (4096 samples and a hop)
PRE_S = 0.2  # ... and this much before it (the background its rise is measured against)
# notes are decided in batches of at least this much audio: a window's notes before the
# batch are decided again (the owner test's rivals), so a longer batch costs less per
# note (0.2 s: 1.8 finds per note) and hears later (the loop follows heat over seconds)
BATCH_S = 0.5
KEEP_S = 2.0  # audio kept before the oldest undecided note's window
LEVEL_NOTES = 32  # the take's level is fitted on the stream's first notes (cold coils), then held
# one pair's loudness ratio (heard / intended, s.d.) for the level's stray test
# (:func:`.level.anchor_level_db`): a key's own loudness about the nominal, uniform within
# the spec's tolerance (the calibrator adds the detector's noise on a lone strike, 2.5
# units: 0.117 against this 0.115 at velocity 118)
LEVEL_RATIO_SD = KEY_LOUDNESS_TOLERANCE / math.sqrt(3.0)
OFFSET_NOTES = 16  # without a click: the clock's constant from this many first notes
# an ear in its own thread that is this far behind its audio (a step's blocks waited this
# long for it) decides the batch with a quick detector (Detector.quick: no step fits),
# until it has caught up; at load ~3 on 2 cores a step waited at most 0.44-0.67 s
# (bench/bench_ear_thread.py, session 22), so this only acts on an ear falling behind
HURRY_S = 1.0


@dataclass(frozen=True, slots=True)
class Expected:
    """A planned note: its key (the loop's note index), target MCU time, pitch, loudness."""

    key: int
    t_us: float
    pitch: int
    velocity: float


class AudioClock:
    """``mcu_us = A + B * audio_s`` fitted (weighted least squares) on the blocks'
    capture times (``ts = A + B * audio_s + L``, ``L`` an unknown constant) and the
    clicks' MCU times (no ``L``). Running sums: bounded cost per block."""

    def __init__(self) -> None:
        self._m = np.zeros((3, 3))
        self._r = np.zeros(3)
        self._x0: float | None = None  # audio s and MCU µs of the first stamp (conditioning)
        self._y0 = 0.0
        self.stamps = 0
        self.rejected = 0
        self._clicks = 0
        self.anchored = False  # the constant L is known (a click, or the first notes)
        self._shift_us = 0.0  # without a click: the constant from the first notes
        self._fit: tuple[float, float, float] | None = None

    def _row(self, x: float, y: float, stamp: bool, w: float) -> None:
        assert self._x0 is not None
        u = np.array([1.0, x - self._x0, 1.0 if stamp else 0.0])
        self._m += w * np.outer(u, u)
        self._r += w * u * (y - self._y0)
        self._fit = None

    def add_stamp(self, audio_s: float, mcu_us: float) -> None:
        """A block whose first sample (``audio_s`` on the card's clock) was captured at
        MCU time ``mcu_us`` (with the card's constant error and jitter)."""
        if self._x0 is None:
            self._x0, self._y0 = audio_s, mcu_us
        if self.stamps >= 20:
            a, b, ll = self.solve()
            if abs(mcu_us - (a + b * audio_s + ll)) > STAMP_REJECT_US:
                self.rejected += 1
                return
        self.stamps += 1
        self._row(audio_s, mcu_us, True, 1.0 / STAMP_SD_US**2)

    def add_click(self, audio_s: float, mcu_us: float) -> None:
        """A click heard at ``audio_s`` that sounded at MCU time ``mcu_us``."""
        if self._x0 is None:
            self._x0, self._y0 = audio_s, mcu_us
        self._row(audio_s, mcu_us, False, 1.0 / CLICK_SD_US**2)
        self._clicks += 1
        self.anchored = True

    def anchor_shift(self, shift_us: float) -> None:
        """Without a click: the constant ``L`` taken as the stamps' (0) plus ``shift_us``."""
        self._shift_us = shift_us
        self.anchored = True

    def solve(self) -> tuple[float, float, float]:
        """(A µs, B µs per audio s, L µs); ``L`` 0 until a click tells it."""
        if self._fit is None:
            assert self._x0 is not None
            # a prior on the rate: nominal within RATE_SD (a card's drift is +-100 ppm):
            # the first blocks' jitter cannot tilt the line
            m, r = self._m.copy(), self._r.copy()
            m[1, 1] += 1.0 / RATE_SD**2
            r[1] += 1e6 / RATE_SD**2
            if self._clicks and self.stamps:
                a, b, ll = np.linalg.solve(m, r)
            else:
                a, b = np.linalg.solve(m[:2, :2], r[:2])
                ll = 0.0
            self._fit = (self._y0 + float(a) - float(b) * self._x0, float(b), float(ll))
        return self._fit

    @property
    def ready(self) -> bool:
        return self._x0 is not None

    def to_mcu_us(self, audio_s: float) -> float:
        a, b, _ = self.solve()
        return a + b * audio_s + self._shift_us

    def to_audio_s(self, mcu_us: float) -> float:
        a, b, _ = self.solve()
        return (mcu_us - self._shift_us - a) / b

    @property
    def drift_ppm(self) -> float:
        """The card's clock against the MCU's (ppm: + when the card runs fast)."""
        return (1e6 / self.solve()[1] - 1.0) * 1e6


class LiveAudioEar:
    """The planned notes of one stream, heard in its audio as it arrives (module doc).

    ``click``: ``(MCU time of the pattern's first on-edge, the click's delay µs)`` where
    the stream begins with the sync click's pattern (:data:`.align.PATTERN_US`), else
    None (the clock's constant from the first notes); ``level_db``: the take's level
    where it is known (a measured microphone), else fitted on the first notes."""

    def __init__(self, sample_rate: int, click: tuple[int, int] | None, *, level_db: float | None = None,
                 where: str = "live audio") -> None:
        self.sr = int(sample_rate)
        self.where = where
        self.clock = AudioClock()
        self._click = click
        self._buf: list[np.ndarray] = []  # blocks not yet joined
        self._y = np.zeros(0, dtype=np.float32)  # samples base..n
        self._base = 0  # sample number of _y[0]
        self.n = 0  # samples received
        self._todo: list[Expected] = []  # planned, not decided yet (in time order)
        self._all: list[Expected] = []  # planned, recent (the owner test's rivals)
        self._last_batch_s = -math.inf
        self._heard: list[HeardNote] = []  # reported (MCU time, level removed)
        self._held: list[tuple[Expected, HeardNote]] = []  # heard before the level (or clock) is known
        self.level_db = level_db
        self.decided = 0  # planned notes decided (heard or not)
        self.heard_count = 0
        self.cost_s = 0.0  # processing time spent (wall), for the x-real-time figure
        self.detectors = 0
        self.hurried = 0  # windows decided with a quick detector (behind by HURRY_S or more)
        # how far behind its audio the ear is (s): its thread's (AudioEar), else never
        self.behind: Callable[[], float] = lambda: 0.0

    # -- input ---------------------------------------------------------------------------
    def expect(self, key: int, t_us: float, pitch: int, velocity: float) -> None:
        """A note sent: struck to sound at MCU time ``t_us`` at ``velocity``."""
        e = Expected(key, float(t_us), int(pitch), float(velocity))
        self._todo.append(e)
        self._all.append(e)
        if len(self._todo) > 1 and self._todo[-2].t_us > e.t_us:
            self._todo.sort(key=lambda x: x.t_us)
            self._all.sort(key=lambda x: x.t_us)

    def feed(self, samples: np.ndarray, stamp_us: float | None) -> None:
        """One block from the card (mono, any length), its first sample captured at MCU
        time ``stamp_us`` (None: the card gives none; the clock then needs a click)."""
        t0 = time.perf_counter()
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if stamp_us is not None:
            self.clock.add_stamp(self.n / self.sr, float(stamp_us))
        self._buf.append(x)
        self.n += len(x)
        self.cost_s += time.perf_counter() - t0

    # -- output --------------------------------------------------------------------------
    def heard(self, final: bool = False) -> list[HeardNote]:
        """Every planned note heard so far (MCU time; cumulative, in the order decided).
        ``final``: the stream is over: notes still held for the take's level (fewer than
        LEVEL_NOTES heard) are reported with the level of those there are."""
        t0 = time.perf_counter()
        try:
            self._step()
            if final and self._held and self.clock.anchored:
                self._release(force=True)
        finally:
            self.cost_s += time.perf_counter() - t0
        return list(self._heard)

    @property
    def buffered_s(self) -> float:
        """Seconds of audio the ear holds (bounded: what the next windows can need)."""
        return (len(self._y) + sum(len(b) for b in self._buf)) / self.sr

    @property
    def notes(self) -> list[HeardNote]:
        """The notes reported so far (without deciding more)."""
        return list(self._heard)

    def _samples(self) -> np.ndarray:
        if self._buf:
            self._y = np.concatenate([self._y, *self._buf])
            self._buf = []
        return self._y

    def _step(self) -> None:
        if not self.clock.ready:
            return
        y = self._samples()
        have_s = self.n / self.sr
        if self._click is not None and not self.clock.anchored:
            if not self._anchor_click(y, have_s):
                return
        before, after = ONSET_WINDOW.before_us * 1e-6, ONSET_WINDOW.after_us * 1e-6
        ready = [e for e in self._todo if self.clock.to_audio_s(e.t_us) + after + DECIDE_S <= have_s]
        if not ready:
            return
        if have_s - self._last_batch_s < BATCH_S and len(ready) < len(self._todo):
            oldest = self.clock.to_audio_s(ready[0].t_us) + after + DECIDE_S
            if have_s - oldest < BATCH_S:
                return  # wait for a batch's worth of audio
        self._last_batch_s = have_s
        self._decide(ready, y, before, after)
        done = {id(e) for e in ready}
        self._todo = [e for e in self._todo if id(e) not in done]
        # keep the audio and the rivals the next batches can need
        keep_from = self.clock.to_audio_s(self._todo[0].t_us) if self._todo else have_s
        keep_from -= before + PRE_S + KEEP_S
        cut = int(keep_from * self.sr) - self._base
        if cut > 0:
            self._y = self._y[cut:]
            self._base += cut
        # ... and the notes that may still ring in the next window (the detector's context)
        t_keep = self.clock.to_mcu_us(min(keep_from, keep_from + KEEP_S - INFORMED_RING_S))
        self._all = [e for e in self._all if e.t_us >= t_keep]

    def _anchor_click(self, y: np.ndarray, have_s: float) -> bool:
        """Fit the click pattern once its audio (by the stamps' clock) has arrived."""
        assert self._click is not None
        start, delay = self._click
        end_s = self.clock.to_audio_s(start + PATTERN_US[-1] + delay)
        if have_s < end_s + 0.3:
            return False
        lo = max(self._base, int((self.clock.to_audio_s(start) - 0.5) * self.sr))
        seg = y[lo - self._base : int((end_s + 0.3) * self.sr) - self._base]
        # align_clicks looks for the pattern from the start of what it is given
        fit = align_clicks(seg, self.sr, [start], delay, self.where)
        for dt in PATTERN_US:
            m = start + dt + delay
            self.clock.add_click(fit.to_audio_s(m) + lo / self.sr, m)
        ll = self.clock.solve()[2]
        log.info("%s: clock from the click pattern: the card's stamps %+.0f µs off, drift %+.1f ppm",
                 self.where, ll, self.clock.drift_ppm)
        return True

    def _decide(self, ready: list[Expected], y: np.ndarray, before: float, after: float) -> None:
        """Hear the ``ready`` notes in one window of audio (the detector's plan-known search)."""
        clock = self.clock
        x_first = clock.to_audio_s(ready[0].t_us) - before - PRE_S
        x_last = clock.to_audio_s(ready[-1].t_us) + after + DECIDE_S
        i0 = max(self._base, int(x_first * self.sr))
        i1 = min(self.n, int(math.ceil(x_last * self.sr)) + 1)
        seg = y[i0 - self._base : i1 - self._base]
        w0 = i0 / self.sr
        # the plan's notes whose search window lies in this audio: the ones decided now and
        # their neighbours (rivals in the owner test), times relative to the window
        span_lo, span_hi = w0 + before, i1 / self.sr - after
        rivals = [(clock.to_audio_s(e.t_us) - w0, e.pitch) for e in self._all
                  if span_lo <= clock.to_audio_s(e.t_us) <= span_hi]
        # the plan's notes outside that span, not looked for: those struck before it still
        # ring in the window, those after it sound at its end (as the whole take's
        # detector weighs them: the owner test, the keys sounding, the step fits' strikes)
        context = [(clock.to_audio_s(e.t_us) - w0, e.pitch) for e in self._all
                   if not span_lo <= clock.to_audio_s(e.t_us) <= span_hi
                   and w0 - INFORMED_RING_S <= clock.to_audio_s(e.t_us) <= i1 / self.sr]
        self.decided += len(ready)
        if len(seg) < int(0.05 * self.sr) or not rivals:
            return
        quick = self.behind() >= HURRY_S
        det = Detector(seg, self.sr, where=self.where, quick=quick)
        self.detectors += 1
        self.hurried += quick
        onsets = det.detect_intended(rivals, before, after, blind=[], context=context)
        by_pitch: dict[int, list[float]] = {}
        vel: dict[tuple[int, float], float] = {}
        for o in onsets:
            by_pitch.setdefault(o.pitch, []).append(o.t_s)
            vel[(o.pitch, o.t_s)] = o.velocity
        for e in ready:
            x = clock.to_audio_s(e.t_us) - w0
            cands = [t for t in by_pitch.get(e.pitch, []) if -before <= t - x <= after]
            if not cands:
                continue
            t = min(cands, key=lambda c: abs(c - x))
            by_pitch[e.pitch].remove(t)
            v = vel[(e.pitch, t)]
            # heard, its loudness unread (velocity 0: report.heard_loudness): the onset
            # counts; the loop corrects neither its latency nor its drive from it
            if not math.isfinite(v) or v <= 0:
                v = 0.0
            self.heard_count += 1
            h = HeardNote(int(round(clock.to_mcu_us(w0 + t))), e.pitch, float(v))
            self._report(e, h)

    def _report(self, e: Expected, h: HeardNote) -> None:
        """Report ``h`` once the clock's constant and the take's level are known."""
        self._held.append((e, h))
        if not self.clock.anchored:  # no click: the constant from the first notes
            if len(self._held) < OFFSET_NOTES:
                return
            shift = float(np.median([e.t_us - h.t_us for e, h in self._held]))
            self.clock.anchor_shift(shift)
            self._held = [(e, HeardNote(int(round(h.t_us + shift)), h.pitch, h.velocity)) for e, h in self._held]
            log.warning("%s: no sync click: the audio clock's constant from the first %d notes' onsets "
                        "(%+.0f µs): absolute onsets only as good as the calibration's latency",
                        self.where, len(self._held), shift)
        self._release()

    def _release(self, force: bool = False) -> None:
        if self.level_db is None:
            if len(self._held) < LEVEL_NOTES and not force:
                return
            # the keys' mean loudness, the calibrator's anchor (session 16; was the mean of
            # the middle half in dB, take_level_db): on the loud piece's first 2 minutes the
            # ear's velocity - exact, mean |err| 14.35 -> 14.18 and 13.48 -> 13.31 (seeds 1, 2),
            # mean +4.73 -> +2.67 and +5.36 -> +4.14 (docs/hearing.md §4, session 16)
            level, n = anchor_level_db([(e.pitch, h.velocity, e.velocity) for e, h in self._held], self.sr,
                                       LEVEL_RATIO_SD)  # fmt: skip
            self.level_db = level
            log.info("%s: the take's level %+.2f dB (from its first %d notes)", self.where, level, n)
        for _, g in self._held:
            self._heard.append(HeardNote(g.t_us, g.pitch, remove_level(g.pitch, g.velocity, self.level_db, self.sr)))
        self._held = []


Blocks = Callable[[], "list[tuple[np.ndarray, float | None]] | None"]


class AudioEar:
    """The closed loop's ear (:class:`~.loop.Ear`) on a source of blocks: ``blocks()``
    gives the blocks arrived since its last call (``(samples, capture time µs or
    None)``), e.g. ``sim://``'s ``audio_so_far`` or a microphone (:class:`MicBlocks`).
    ``click``: the sync click's output ``(actuator, level, pulse µs, delay µs)``; the
    loop clicks its pattern at the stream's time 0. ``threaded``: the ear's work (feeding
    the blocks, the detector) runs in a thread of its own (:mod:`.ear_thread`), the
    loop's thread only taking the blocks and what has been heard so far: for a port that
    plays on the wall clock, where the ear's work would otherwise hold the loop up; the
    notes heard are the same, later (but where it falls HURRY_S behind: quick detectors). :meth:`close` ends the thread (the loop calls it)."""

    def __init__(self, blocks: Blocks, sample_rate: int, click: tuple[int, int, int, int] | None, *,
                 level_db: float | None = None, where: str = "live audio", threaded: bool = False,
                 max_behind_s: float = MAX_BEHIND_S) -> None:
        self.click = click
        self._blocks = blocks
        self.where = where
        self.ear = LiveAudioEar(sample_rate, None if click is None else (0, click[3]), level_db=level_db,
                                where=where)  # fmt: skip
        self.threaded = threaded
        self._max_behind_s = max_behind_s
        self._worker: EarWorker | None = None
        self.lags_s: list[float] = []  # in the loop's thread: how long each step waited for the ear

    def _thread(self) -> EarWorker:
        if self._worker is None:
            e = self.ear
            self._worker = EarWorker(e.expect, e.feed, e.heard, e.sr,
                                     max_behind_s=self._max_behind_s, name=self.where)  # fmt: skip
            e.behind = self._worker.behind_s  # the ear hurries when its thread falls behind (HURRY_S)
        return self._worker

    def expect(self, key: int, t_us: float, pitch: int, velocity: float) -> None:
        if self.threaded:
            self._thread().expect(key, t_us, pitch, velocity)
        else:
            self.ear.expect(key, t_us, pitch, velocity)

    def heard_so_far(self, final: bool = False) -> list[HeardNote]:
        got = self._blocks()
        if got is None:
            raise TransportError(f"{self.where}: no audio to hear (the device hands over no microphone blocks)")
        if self.threaded:
            w = self._thread()
            return w.finish(got) if final else w.step(got)
        t0 = time.perf_counter()
        for b, stamp in got:
            self.ear.feed(b, stamp)
        heard = self.ear.heard(final)
        self.lags_s.append(time.perf_counter() - t0)
        return heard

    def lag_us(self) -> float:
        """How far behind the audio the ear is now (µs of wall time, which a wall-clock
        port's stream time follows): in its own thread, since the oldest step it has not
        heard yet came; in the loop's thread 0 (the loop waits for it)."""
        return 0.0 if self._worker is None else self._worker.behind_s() * 1e6

    def close(self) -> None:
        """End the ear's thread, if it has one (every exit path of the loop calls this)."""
        if self._worker is not None:
            self._worker.close()

    def stats(self) -> dict[str, Any]:
        """The ear's figures: audio heard (s), its cost (s, x real time), notes decided and
        heard, the clock it found; its lag (how long after a step's audio came the ear had
        heard it: p95 and max ms; in the loop's thread, how long the loop waited for it)."""
        e = self.ear
        audio_s = e.n / e.sr
        out: dict[str, Any] = {
            "audio_s": round(audio_s, 3), "cost_s": round(e.cost_s, 3),
            "x_real_time": round(e.cost_s / audio_s, 4) if audio_s else None,
            "decided": e.decided, "heard": e.heard_count, "windows": e.detectors, "hurried": e.hurried,
            "level_db": None if e.level_db is None else round(e.level_db, 2),
            "clock_by": "click" if self.click is not None else "first notes",
        }
        if self._worker is not None:
            out.update(self._worker.stats())
        else:
            out.update({"threaded": False, "lag": lag_summary(self.lags_s)})
        if e.clock.ready:
            out["drift_ppm"] = round(e.clock.drift_ppm, 2)
            out["stamp_error_us"] = round(e.clock.solve()[2], 1)
            out["stamps_rejected"] = e.clock.rejected
        return out


class RecordingEar(AudioEar):
    """The ear in the loop's thread on ``device``'s blocks, keeping every call the loop
    made on it in ``calls`` (``("blocks", [(samples, stamp µs)])`` per step, ``("expect",
    (key, t_us, pitch, velocity))`` per note sent): a recorded stream, to make the same
    calls again on another ear (tests/test_live_audio.py, bench/bench_ear_windows.py)."""

    def __init__(self, device: Any, spec: Any) -> None:
        self.calls: list[tuple[str, Any]] = []

        def blocks() -> list[tuple[np.ndarray, float | None]]:
            got = device.audio_so_far()
            self.calls.append(("blocks", got))
            return got  # type: ignore[no-any-return]

        super().__init__(blocks, device.audio_rate, click_of(spec), where="recorded")

    def expect(self, key: int, t_us: float, pitch: int, velocity: float) -> None:
        self.calls.append(("expect", (key, t_us, pitch, velocity)))
        super().expect(key, t_us, pitch, velocity)


def replay(calls: list[tuple[str, Any]], sample_rate: int, click: tuple[int, int, int, int] | None,
           **kw: Any) -> tuple[list[list[HeardNote]], AudioEar]:
    """Make a :class:`RecordingEar`'s ``calls`` again on a fresh :class:`AudioEar` (``kw``:
    its options, e.g. ``threaded``), the last step final; what each step's
    ``heard_so_far`` gave, and the ear (closed)."""
    steps = [arg for kind, arg in calls if kind == "blocks"]
    feed = iter(steps)
    ear = AudioEar(lambda: next(feed), sample_rate, click, where="replayed", **kw)
    got = []
    try:
        k = 0
        for kind, arg in calls:
            if kind == "expect":
                ear.expect(*arg)
            else:
                k += 1
                got.append(ear.heard_so_far(final=k == len(steps)))
    finally:
        ear.close()
    return got, ear


def click_of(spec: Any) -> tuple[int, int, int, int] | None:
    """The spec's sync click as :class:`AudioEar` takes it, or None."""
    c = getattr(spec, "sync_click", None)
    return None if c is None else (c.channel, c.pwm_max, c.pulse_us, c.delay_us)


def device_ear(device: Any, spec: Any) -> AudioEar:
    """The live ear on a device that hands over its microphone's blocks while it plays
    (``audio_so_far``: ``sim://``, ``vmcu://``, ``fw-host://``, ``fw-avr://`` with
    ``sensor=audio``); TransportError where it does not. Where the device plays on the
    wall clock (``fw-host://``: ``device.wall_clock``) the ear works in its own thread;
    on virtual time (``sim://``, ``vmcu://``, ``fw-avr://``) in the loop's, as before
    (the same notes, and the loop hears them at the same step)."""
    rate = getattr(device, "audio_rate", None)
    if rate is None:
        raise TransportError(
            f"{device.url}: hands over no audio while it plays (allowed: sim://, vmcu://, fw-host:// or "
            "fw-avr:// with sensor=audio, or a microphone: --mic)"
        )
    return AudioEar(device.audio_so_far, rate, click_of(spec), where=f"{device.url} (live audio)",
                    threaded=bool(getattr(device, "wall_clock", False)))


def mic_ear(mic: Any, device: Any, spec: Any) -> AudioEar:
    """The live ear on a microphone (:class:`~.recording.MicBlocks`, started) while
    ``device`` plays: each block's capture time (the card's stream clock) brought to the
    device's stream time by the pair (the card's clock now, ``device.now_us()``) taken
    together at every step. TransportError where the device keeps no stream time. In
    its own thread where the device plays on the wall clock (``serial://``,
    ``fw-host://``: a real board's stream does not wait for the ear)."""

    def blocks() -> list[tuple[np.ndarray, float | None]]:
        got, card_now_s = mic.take()
        now_us = device.now_us()
        if now_us is None:
            raise TransportError(
                f"--mic: {device.url} keeps no stream time (now_us), so the microphone's blocks "
                "cannot be put on its clock (allowed: a port that streams: serial://, fw-host://, sim://, ...)"
            )
        return [(b, now_us - (card_now_s - adc_s) * 1e6) for b, adc_s in got]

    return AudioEar(blocks, mic.sample_rate, click_of(spec), where=f"--mic {mic.device}",
                    threaded=bool(getattr(device, "wall_clock", False)))


__all__ = ["AudioClock", "AudioEar", "Expected", "LiveAudioEar", "RecordingEar", "click_of", "device_ear", "mic_ear",
           "replay"]
