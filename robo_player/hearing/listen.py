"""Hearing known strikes in a recording: what the calibrator asks of a microphone.

:func:`hear_strikes` aligns the take's clock on its sync patterns
(:mod:`.align`), then looks for each strike's key in the window where its onset can
be (MCU time, mapped to the audio clock) and returns the onset in MCU time and the
loudness, or None for a strike that did not sound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import HearingError
from .align import ClockFit, align_clicks, align_take
from .detector import (
    FIND_MIN_FRACTION,
    N_FFT,
    RISE_S,
    SAMPLE_RATES,
    TIGHT_MIN_FRACTION,
    Detector,
    Onset,
    clipped_fraction,
)

log = logging.getLogger(__name__)

MAX_CLIPPED = 0.001  # more than this fraction of samples at full scale: a clipped take
SILENCE_DBFS = -70.0  # a take whose loudest sample is under this heard nothing
OTHERS_US = 150_000  # strikes this near a window weigh in its owner test
RING_S = 3.0  # the strikes heard this long before a window may still ring in its bands
AFTER_S = 0.2  # ... and those that may begin this long after it end the step fit there
INSIDE_US = 1_000  # with taken_us: an onset found this far outside its window is not the strike's
TAKEN_MIN_SPAN_US = 20_000  # a piece of a wide window between taken onsets shorter than this is not searched
# how far before an onset the detector's rise already shows it (:meth:`Detector.rise_db`
# is centred over RISE_S, its frames N_FFT long): a window that ends nearer than this
# before an onset of its own key finds that onset's rise, which passes the owner test
# (its key's) and is refined onto the onset outside the window, where :func:`_inside`
# refuses it, the strike's own earlier rise never tried (a soft strike followed by its
# key's return probe: three bass keys of a 3-place take, docs/calibration.md "Session 28,
# probe"). 43 ms at 44.1 kHz
OWN_REACH_US = int(1e6 * (RISE_S / 2 + N_FFT / 2 / min(SAMPLE_RATES))) + 1


@dataclass(frozen=True, slots=True)
class Expected:
    """A strike of ``pitch`` commanded at MCU time ``t_us``; its onset lies in
    [t_us - before_us, t_us + after_us]."""

    pitch: int
    t_us: int
    before_us: int
    after_us: int
    # not heard in its window: look again in [t_us - wide[0], t_us + wide[1]] (None: don't).
    # A soft strike's latency moves most with the key's threshold, which the curve has
    # not pinned yet: its onset may lie far from the prediction
    wide: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Heard:
    t_us: float  # onset, MCU time (without a sync click: the sync key's full-drive latency early, see align)
    velocity: float
    sure: bool = True  # False: the onset is the energy fit's alone (:attr:`Onset.sure`)


def check_take(samples: np.ndarray, where: str) -> None:
    """A :class:`HearingError` for a silent or clipped recording, saying what was heard."""
    y = np.asarray(samples)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    peak_db = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak_db < SILENCE_DBFS:
        raise HearingError(
            f"{where}: silent recording: its loudest sample is {peak_db:.0f} dBFS "
            f"(need > {SILENCE_DBFS:.0f} dBFS): is the microphone on and near the piano?"
        )
    clipped = clipped_fraction(np.asarray(y, dtype=np.float64))
    if clipped > MAX_CLIPPED:
        raise HearingError(
            f"{where}: clipped recording: {100 * clipped:.2f} % of its samples are at full "
            f"scale (allowed: {100 * MAX_CLIPPED:.1f} %): turn the input gain down"
        )


def _look(
    det: Detector, clock: ClockFit, expected: list[Expected], e: Expected, before_us: int, after_us: int,
    risen: float, heard: list[tuple[float, int]],
) -> Onset | None:
    """``e``'s onset in [t_us - before_us, t_us + after_us] (MCU time), or None; the keys
    struck near (their windows overlap this one, widened by the owner test's long
    windows) weigh in its owner test; ``heard``: the onsets heard so far (audio s, key),
    which ring on (a re-strike of a ringing key is timed by the step fit:
    :meth:`Detector.find`'s ``ringing``), with the strikes that may begin after the window
    (at the earliest their windows allow) ending that fit."""
    return _look_span(det, clock, expected, e, e.t_us - before_us, e.t_us + after_us, risen, heard)


def _look_span(
    det: Detector, clock: ClockFit, expected: list[Expected], e: Expected, t0: float, t1: float,
    risen: float, heard: list[tuple[float, int]],
) -> Onset | None:
    """:func:`_look` in [t0, t1] (MCU µs)."""
    others = [
        x.pitch for x in expected
        if x is not e and x.t_us + x.after_us > t0 - OTHERS_US and x.t_us - x.before_us < t1 + OTHERS_US
    ]
    a0, a1 = clock.to_audio_s(t0), clock.to_audio_s(t1)
    ringing = [(u, q) for u, q in heard if a0 - RING_S < u < a0]
    ringing += [
        (u, x.pitch) for x in expected
        if x is not e and a1 < (u := clock.to_audio_s(x.t_us - x.before_us)) < a1 + AFTER_S
    ]
    return det.find(e.pitch, a0, a1, others=others, min_risen=risen, ringing=ringing)


def _inside(o: Onset | None, clock: ClockFit, t0: float, t1: float) -> Onset | None:
    """``o`` if it lies in [t0, t1] (MCU µs, ± :data:`INSIDE_US`), else None: the search's
    refinement can carry a candidate found at a window's end onto the next strike's onset
    (a key-return probe ringing on its key, the next key struck 30 ms past its window:
    docs/calibration.md "Session 27, lead")."""
    if o is None or t0 - INSIDE_US <= clock.to_mcu_us(o.t_s) <= t1 + INSIDE_US:
        return o
    return None


def _look_untaken(
    det: Detector, clock: ClockFit, expected: list[Expected], e: Expected, risen: float,
    heard: list[tuple[float, int]], taken_us: int,
) -> Onset | None:
    """``e``'s wide look with the onsets heard as other keys' strikes taken out: the wide
    window split at each (± ``taken_us``), the pieces searched in time order, the first
    onset found kept. A window that reaches past the next strike's command would
    otherwise time a soft or silent strike at its neighbour's onset, whose partials
    overlap a bass key's (the fixed take: keys 250 ms apart, windows to the silent
    latency, docs/calibration.md "Session 27, lead"), or at its own key's next onset (a
    key-return probe struck right after it: the piece before an onset of its own key ends
    :data:`OWN_REACH_US` before it; session 28)."""
    assert e.wide is not None
    t0, t1 = e.t_us - e.wide[0], e.t_us + e.wide[1]
    cuts = sorted(
        (c, q == e.pitch) for u, q in heard if t0 - taken_us < (c := clock.to_mcu_us(u)) < t1 + taken_us
    )
    lo = float(t0)
    for c, own in [*cuts, (float(t1) + taken_us, False)]:  # (the last: the window's end)
        hi = min(float(t1), c - (max(taken_us, OWN_REACH_US) if own else taken_us))
        if hi - lo >= TAKEN_MIN_SPAN_US:
            o = _inside(_look_span(det, clock, expected, e, lo, hi, risen, heard), clock, lo, hi)
            if o is not None:
                return o
        lo = max(lo, c + taken_us)
    return None


def hear_strikes(
    samples: np.ndarray,
    sample_rate: int,
    expected: list[Expected],
    sync_pitch: int,
    sync_starts_us: list[int],
    *,
    where: str = "audio",
    click_delay_us: int | None = None,
    taken_us: int | None = None,
) -> tuple[list[Heard | None], ClockFit]:
    """Each expected strike's onset (MCU time) and loudness, or None if not heard.

    ``taken_us`` not None: the wide looks (:attr:`Expected.wide`) come after every
    strike's own window was searched, and refuse what was heard there as another key's
    onset, ± ``taken_us`` (:func:`_look_untaken`), and an onset found outside the window
    searched is refused (:func:`_inside`); None: each wide look at once, as the session's
    rounds ask.

    ``click_delay_us`` not None: the sync patterns were clicked (``spec.sync_click``)
    and the clock is absolute (a strike's window is then tight, and a soft note whose
    fundamental alone rose is taken); None: struck on ``sync_pitch`` (early by its
    latency)."""
    det = Detector(samples, sample_rate, where=where)
    check_take(det.y, where)
    if click_delay_us is not None:
        clock = align_clicks(det.y, sample_rate, sync_starts_us, click_delay_us, where)
        risen = TIGHT_MIN_FRACTION
    else:
        clock = align_take(det, sync_pitch, sync_starts_us, where)
        risen = FIND_MIN_FRACTION
    found: list[Onset | None] = []
    heard: list[tuple[float, int]] = []  # (audio s, key) of the onsets heard so far
    later: list[int] = []  # with taken_us: the strikes whose wide look waits for the first pass
    for i, e in enumerate(expected):
        o = _look(det, clock, expected, e, e.before_us, e.after_us, risen, heard)
        if taken_us is not None:
            o = _inside(o, clock, e.t_us - e.before_us, e.t_us + e.after_us)
        if o is None and e.wide is not None:
            if taken_us is None:
                o = _look(det, clock, expected, e, *e.wide, risen, heard)
            else:
                later.append(i)
        found.append(o)
        if o is not None:
            heard.append((o.t_s, o.pitch))
    if later:
        assert taken_us is not None
        first = sorted(heard)
        for i in later:
            o = _look_untaken(det, clock, expected, expected[i], risen, first, taken_us)
            found[i] = o
            if o is not None:
                heard.append((o.t_s, o.pitch))
    out = [None if o is None else Heard(clock.to_mcu_us(o.t_s), o.velocity, o.sure) for o in found]
    log.info(
        "%s: clock %+.1f ppm, offset %.4f s (rms %.0f us over %d sync onsets); %d of %d strikes heard",
        where, clock.drift_ppm, clock.a_s, clock.rms_us, clock.points,
        sum(h is not None for h in out), len(out),
    )
    if expected and not any(out):
        raise HearingError(f"{where}: none of {len(expected)} strikes heard (the sync pattern was)")
    return out, clock
