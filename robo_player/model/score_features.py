"""Score features and expression targets for the rendering network, and the measures
``eval-model`` compares renderings with (pure numpy, no torch).

A score is a :class:`ScoreNotes`: per note its pitch, onset and duration in quarter notes,
position in its bar, voice, staff and marking flags, plus the score's nominal tempo. It
comes from an ASAP alignment (:func:`from_performance`) or a MIDI score
(:func:`from_score`: quarters from the file's ticks, staff from the track where there are
several, else from the pitch).

Expression is five numbers per note (:data:`TARGETS`), each relative to the score so that
the rendering keeps the score's average tempo:

- ``velocity``: (MIDI velocity - 64) / 32;
- ``tempo``: log of the local seconds per quarter (over at least one quarter from the
  note's onset) against the notated one (the score's tempo marks where known, else one
  tempo), minus the performance's median: the deviation from the marks;
- ``timing``: onset minus its chord's median onset, in 0.1 s (asynchrony, melody lead);
- ``articulation``: log(performed duration / written duration at the local tempo);
- ``pedal``: 1 when the sustain pedal (CC64 >= 64) is down 30 ms after the onset.

The beat level (for the beat tempo heads): :func:`beat_grid` is the quarter-note grid
``eval-model`` measures tempo on, :func:`beat_features` one row per inter-beat interval,
:func:`beat_targets` each interval's performed log duration against the notated one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..score import Note, PedalEvent, Score

TARGETS = ("velocity", "tempo", "timing", "articulation", "pedal")
N_FEATURES = 36  # the first 24 are the session-5 set, 32 session 6's (a checkpoint reads its first n)
# Velocity targets are normalised within each performance (z-score), then put back on a
# common scale: the mean of the training performances' mean velocities and spreads (ASAP
# train split, 827 performances), so one pianist's loud day is not a score feature.
VEL_MEAN, VEL_STD = 64.3, 15.6


@dataclass(slots=True)
class ScoreNotes:
    """A score for rendering; arrays of shape (M,), sorted by (onset_q, pitch)."""

    pitch: np.ndarray
    onset_q: np.ndarray
    dur_q: np.ndarray
    bar_pos_q: np.ndarray
    bar_len_q: np.ndarray
    voice: np.ndarray
    staff: np.ndarray
    flags: np.ndarray
    sec_per_q: float = 0.5
    score_vel: np.ndarray | None = None  # the score's own velocity per note (its dynamics), if known
    score_spq: np.ndarray | None = None  # the notated seconds per quarter per note (tempo marks)


def from_performance(p: object, sec_per_q: float = 0.5) -> ScoreNotes:
    """The score side of an :class:`robo_player.model.asap.Performance` (with the score
    MIDI's velocities and tempo marks where :func:`asap.attach_score_marks` read them)."""
    return ScoreNotes(np.asarray(p.pitch, np.int64), p.onset_q, p.dur_q, p.bar_pos_q,  # type: ignore[attr-defined]
                      p.bar_len_q, p.voice, p.staff, p.flags, sec_per_q,  # type: ignore[attr-defined]
                      getattr(p, "score_vel", None), getattr(p, "score_spq", None))


def from_score(score: Score, time_signature: tuple[int, int] = (4, 4)) -> ScoreNotes:
    """A MIDI score -> :class:`ScoreNotes`: quarters through the tempo map (ticks), one
    time signature for the whole piece, staff 2 for the lower track (or below middle C)."""
    notes = sorted(score.notes, key=lambda n: (n.onset_us, n.pitch))
    tm = sorted(score.tempo_map, key=lambda t: t.t_us)
    tpb = float(score.ticks_per_beat or 480)

    def to_q(t_us: float) -> float:
        if not tm:
            return t_us / 500_000.0
        i = 0
        while i + 1 < len(tm) and tm[i + 1].t_us <= t_us:
            i += 1
        return (tm[i].tick + (t_us - tm[i].t_us) / tm[i].us_per_beat * tpb) / tpb
    on = np.array([to_q(n.onset_us) for n in notes])
    end = np.array([to_q(n.end_us) for n in notes])
    num, den = time_signature
    bar_len = num * 4.0 / den
    tracks = sorted({n.track for n in notes})
    if len(tracks) >= 2:
        staff = np.array([1 if n.track == tracks[0] else 2 for n in notes])
    else:
        staff = np.array([1 if n.pitch >= 60 else 2 for n in notes])
    pitch = np.array([n.pitch for n in notes], np.int64)
    dur_s = score.duration_s if notes else 0.0
    sec_per_q = dur_s / max(float(end.max() if len(end) else 1.0), 1e-6) if notes else 0.5
    spq = np.full(len(notes), 0.5)
    if tm:
        t_tm = np.array([t.t_us for t in tm])
        us = np.array([t.us_per_beat for t in tm], float)
        spq = us[np.maximum(np.searchsorted(t_tm, [n.onset_us for n in notes], side="right") - 1, 0)] / 1e6
        span_q = float(on.max() - on.min()) if notes else 0.0
        # the notated tempo's average over the piece (tempo changes included)
        sec_per_q = (notes[-1].onset_us - notes[0].onset_us) / 1e6 / span_q if span_q > 0 else float(spq[0])
    return ScoreNotes(pitch, on, np.maximum(end - on, 1e-3), np.mod(on, bar_len), np.full(len(on), bar_len),
                      staff.copy(), staff, np.zeros(len(on), np.int64), sec_per_q,
                      np.array([n.velocity for n in notes], float), spq)


def groups(onset_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique onsets (G,) and each note's group index (M,)."""
    q, inv = np.unique(np.round(onset_q, 4), return_inverse=True)
    return q, inv


def features(s: ScoreNotes, n: int = N_FEATURES) -> np.ndarray:
    """(M, n) float32 (the first ``n`` of :data:`N_FEATURES`): pitch, durations and IOIs
    (log2 quarters), metre position, chord size and place in the chord, local density and
    register, hand, markings, place in the piece; then (24..31) the melody (pitch below the
    highest note within a quarter), the IOI against the local median IOI, quarters to the
    next and since the last phrase boundary (a fermata, or an IOI of at least twice the local
    median and a quarter), the bar's place in a 4-bar group, and the depth below the chord's top;
    then (32..35) what the score itself marks, where known (else 0): its velocity (the dynamics
    markings, as a MIDI export writes them) against the piece's median, whether the piece has
    dynamics at all, the notated tempo against the piece's median (log), and the notated
    tempo change over the next 4 quarters (log)."""
    m = len(s.pitch)
    f = np.zeros((m, N_FEATURES), np.float32)
    if m == 0:
        return f
    q, inv = groups(s.onset_q)
    pitch = s.pitch.astype(float)
    g_hi = np.full(len(q), -1.0)
    g_lo = np.full(len(q), 200.0)
    np.maximum.at(g_hi, inv, pitch)
    np.minimum.at(g_lo, inv, pitch)
    size = np.bincount(inv, minlength=len(q)).astype(float)
    nxt = np.r_[np.diff(q), 1.0]
    prv = np.r_[1.0, np.diff(q)]
    # local density and mean register over +-2 quarters (a window of groups)
    lo = np.searchsorted(q, q - 2.0)
    hi = np.searchsorted(q, q + 2.0, side="right")
    csum = np.r_[0, np.cumsum(size)]
    psum = np.r_[0, np.cumsum(np.bincount(inv, weights=pitch, minlength=len(q)))]
    dens = (csum[hi] - csum[lo]) / 4.0
    reg = (psum[hi] - psum[lo]) / np.maximum(csum[hi] - csum[lo], 1)
    pos = s.bar_pos_q / np.maximum(s.bar_len_q, 1e-3)
    span = max(float(q[-1] - q[0]), 1e-3)
    f[:, 0] = (pitch - 64) / 24
    f[:, 1] = np.log2(np.clip(s.dur_q, 1 / 32, 16)) / 4
    f[:, 2] = np.log2(np.clip(nxt[inv], 1 / 32, 16)) / 4
    f[:, 3] = np.log2(np.clip(prv[inv], 1 / 32, 16)) / 4
    f[:, 4] = np.sin(2 * np.pi * pos)
    f[:, 5] = np.cos(2 * np.pi * pos)
    f[:, 6] = s.bar_pos_q < 1e-3  # downbeat
    f[:, 7] = np.abs(s.bar_pos_q - np.round(s.bar_pos_q)) < 1e-3  # on a quarter beat
    f[:, 8] = s.bar_len_q / 4
    f[:, 9] = np.log2(size[inv]) / 3
    f[:, 10] = pitch == g_hi[inv]  # top of its chord (melody)
    f[:, 11] = pitch == g_lo[inv]  # bottom (bass)
    f[:, 12] = np.log1p(dens[inv]) / 2
    f[:, 13] = (pitch - reg[inv]) / 12
    f[:, 14] = s.staff == 2  # left hand
    f[:, 15] = np.minimum(s.voice, 8) / 8
    for b in range(5):  # grace, accent, staccato, fermata, trill
        f[:, 16 + b] = (s.flags >> b) & 1
    f[:, 21] = (s.onset_q - q[0]) / span
    f[:, 22] = 1.0 - f[:, 21]
    f[:, 23] = (g_hi[inv] - g_lo[inv]) / 24
    # melody: the highest pitch within +-1 quarter (a running max over the groups' tops)
    lo1 = np.searchsorted(q, q - 1.0)
    hi1 = np.searchsorted(q, q + 1.0, side="right")
    top = np.array([g_hi[a:b].max() for a, b in zip(lo1, hi1, strict=True)])
    f[:, 24] = np.clip((top[inv] - pitch) / 12, 0, 4)
    # the IOI against the local median IOI (+-4 quarters): long notes end phrases
    lo4 = np.searchsorted(q, q - 4.0)
    hi4 = np.searchsorted(q, q + 4.0, side="right")
    med = np.array([np.median(nxt[a:b]) for a, b in zip(lo4, hi4, strict=True)])
    rel = np.log2(np.clip(nxt, 1 / 32, 16) / np.clip(med, 1 / 32, 16))
    f[:, 25] = rel[inv] / 3
    ferm = np.zeros(len(q), bool)
    np.logical_or.at(ferm, inv, (s.flags & 8) > 0)
    bound = ferm | ((rel >= 1.0) & (nxt >= 1.0))
    bound[-1] = True
    bq = q[bound]
    k = np.searchsorted(bq, q)  # the next boundary at or after each group
    to_next = bq[np.minimum(k, len(bq) - 1)] - q
    prev_b = np.r_[q[0], bq][np.searchsorted(bq, q, side="left")]  # the last boundary before
    since = q - np.minimum(prev_b, q)
    f[:, 26] = np.log2(1 + to_next[inv]) / 5
    f[:, 27] = np.log2(1 + since[inv]) / 5
    bar = np.round((s.onset_q - s.bar_pos_q) / np.maximum(s.bar_len_q, 1e-3))
    f[:, 28] = np.mod(bar, 4) / 3
    f[:, 29] = np.mod(bar, 2)
    f[:, 30] = np.clip((g_hi[inv] - pitch) / 12, 0, 4)
    f[:, 31] = np.log2(1 + np.maximum(q[-1] - s.onset_q, 0)) / 8  # quarters to the end
    if s.score_vel is not None and len(s.score_vel) == m:
        v = np.asarray(s.score_vel, float)
        if float(v.std()) > 0.5:
            f[:, 32] = np.clip((v - np.median(v)) / 20, -3, 3)
            f[:, 33] = 1.0
    if s.score_spq is not None and len(s.score_spq) == m:
        ls = np.log(np.clip(np.asarray(s.score_spq, float), 0.02, 10))
        f[:, 34] = np.clip(ls - np.median(ls), -1.5, 1.5)
        ahead = np.searchsorted(s.onset_q, s.onset_q + 4.0, side="right") - 1  # onsets are sorted
        f[:, 35] = np.clip(ls[ahead] - ls, -1.5, 1.5)
    return f[:, :n]


def notated_spq(s: ScoreNotes) -> np.ndarray:
    """The notated local seconds per quarter at each note (measured as :func:`targets`
    measures a performance's); ``sec_per_q`` throughout where the tempo marks are unknown."""
    if s.score_spq is None or len(s.score_spq) != len(s.pitch):
        return np.full(len(s.pitch), s.sec_per_q)
    gq, gt = _group_times(s.onset_q, notated_times(s), np.ones(len(s.pitch), bool))
    return local_spq(s.onset_q, gq, gt) if len(gq) >= 2 else np.asarray(s.score_spq, float)


def notated_times(s: ScoreNotes) -> np.ndarray:
    """Each note's onset in seconds as written: the quarters at the notated tempo (the
    score's tempo marks where known, else ``sec_per_q`` throughout)."""
    q, inv = groups(s.onset_q)
    if s.score_spq is None or len(s.score_spq) != len(s.pitch) or len(q) < 2:
        return s.onset_q * s.sec_per_q
    spq_g = np.zeros(len(q))
    spq_g[inv[::-1]] = np.asarray(s.score_spq, float)[::-1]  # the group's first note's tempo
    t = np.r_[0.0, np.cumsum(np.diff(q) * spq_g[:-1])] + q[0] * spq_g[0]
    return t[inv]


def _group_median(values: np.ndarray, inv: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per group index ``inv`` (0..n-1), vectorised."""
    if n == 0:
        return np.zeros(0)
    order = np.lexsort((values, inv))
    v = values[order]
    counts = np.bincount(inv, minlength=n)
    starts = np.cumsum(counts) - counts
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    return (v[lo] + v[hi]) / 2.0


def _group_times(onset_q: np.ndarray, onset_s: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unique onset with a played note: (quarters, median onset seconds), increasing in both."""
    q, inv = groups(onset_q[ok])
    t = _group_median(onset_s[ok], inv, len(q))
    keep = np.ones(len(q), bool)
    last = -np.inf
    for k in range(len(q)):  # drop groups that go back in time (ornaments, misalignments)
        if t[k] <= last:
            keep[k] = False
        else:
            last = t[k]
    return q[keep], t[keep]


def local_spq(onset_q: np.ndarray, gq: np.ndarray, gt: np.ndarray, span_q: float = 1.0) -> np.ndarray:
    """Seconds per quarter at each onset, over at least ``span_q`` quarters ahead."""
    if len(gq) < 2:
        return np.full(len(onset_q), 0.5)
    t0 = np.interp(onset_q, gq, gt)
    q1 = np.minimum(onset_q + span_q, gq[-1])
    q0 = np.minimum(onset_q, gq[-1] - span_q)
    t0 = np.interp(q0, gq, gt)
    t1 = np.interp(np.maximum(q1, q0 + span_q), gq, gt)
    return np.maximum((t1 - t0) / span_q, 1e-3)


def pedal_at(pedal: np.ndarray, t_s: np.ndarray) -> np.ndarray:
    """CC64 value (0..127) at each time, from (K, 2) [t_us, value] changes."""
    if len(pedal) == 0:
        return np.zeros(len(t_s))
    order = np.argsort(pedal[:, 0], kind="stable")
    tt, vv = pedal[order, 0] / 1e6, pedal[order, 1]
    i = np.searchsorted(tt, t_s, side="right") - 1
    return np.where(i >= 0, vv[np.maximum(i, 0)], 0)


def targets(p: object) -> tuple[np.ndarray, np.ndarray]:
    """Expression targets (M, 5) float32 of an aligned performance and the mask of played
    notes (M,) bool (see the module docstring)."""
    onset_q, dur_q = p.onset_q, p.dur_q  # type: ignore[attr-defined]
    on, dur, vel = p.p_onset_s, p.p_dur_s, p.p_vel  # type: ignore[attr-defined]
    ok = vel >= 0
    y = np.zeros((len(onset_q), 5), np.float32)
    if ok.sum() < 2:
        return y, np.zeros(len(onset_q), bool)
    gq, gt = _group_times(onset_q, on, ok & ((p.flags & 1) == 0))  # type: ignore[attr-defined]
    if len(gq) < 2:
        return y, np.zeros(len(onset_q), bool)
    spq = local_spq(onset_q, gq, gt)
    logspq = np.log(spq) - np.log(notated_spq(from_performance(p)))  # the deviation from the marks
    pv = vel[ok].astype(float)
    z = (vel - pv.mean()) / max(float(pv.std()), 4.0)
    y[:, 0] = np.clip((VEL_MEAN + VEL_STD * z - 64) / 32, -2.0, 2.0)
    y[:, 1] = np.clip(logspq - np.median(logspq), -1.0, 1.0)
    chord_t = np.interp(onset_q, gq, gt)
    y[:, 2] = np.clip(np.nan_to_num(on - chord_t), -0.15, 0.15) * 10
    art = np.log(np.nan_to_num(dur, nan=1.0) / np.maximum(dur_q * spq, 0.02))
    y[:, 3] = np.clip(art, -4.0, 1.5)
    y[:, 4] = pedal_at(p.pedal, np.nan_to_num(on) + 0.03) >= 64  # type: ignore[attr-defined]
    return y, ok


def render_notes(s: ScoreNotes, pred: np.ndarray, pedal_threshold: float = 0.5,
                 keep_tempo: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, int]]]:
    """Predictions (M, 5) -> per note onset seconds, duration seconds, velocity (M,) and
    pedal changes ``[(t_s, value)]``. The tempo curve is centred (``keep_tempo``) so the
    rendering keeps the score's average tempo: its notated duration, tempo marks included."""
    m = len(s.pitch)
    if m == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, int), []
    q, inv = groups(s.onset_q)
    cnt = np.bincount(inv, minlength=len(q))
    tp = np.bincount(inv, weights=pred[:, 1], minlength=len(q)) / np.maximum(cnt, 1)
    base = np.zeros(len(q))
    base[inv[::-1]] = notated_spq(s)[::-1]  # the tempo marks; the network predicts the deviation
    if keep_tempo:
        w = np.r_[np.diff(q), 1.0] * base
        tp = tp - np.log(np.sum(w * np.exp(tp)) / np.sum(w))  # the notated duration kept
    spq_g = base * np.exp(tp)
    t = np.r_[0.0, np.cumsum(np.diff(q) * spq_g[:-1])]
    on = np.maximum(t[inv] + pred[:, 2] / 10, 0.0)
    dur = np.maximum(s.dur_q * spq_g[inv] * np.exp(np.clip(pred[:, 3], -4, 1.5)), 0.02)
    vel = np.clip(np.round(64 + 32 * pred[:, 0]), 1, 127).astype(int)
    ped_g = np.bincount(inv, weights=pred[:, 4], minlength=len(q)) / np.maximum(cnt, 1)
    bass = np.full(len(q), 200)
    np.minimum.at(bass, inv, s.pitch)
    changes: list[tuple[float, int]] = []
    down = False
    for k in range(len(q)):
        want = ped_g[k] >= pedal_threshold
        if want and down and bass[k] != bass[k - 1]:  # a new bass: lift and catch the pedal again
            changes.append((t[k], 0))
            changes.append((t[k] + 0.06, 127))
        elif want and not down:
            changes.append((t[k] + 0.03, 127))
        elif not want and down:
            changes.append((t[k], 0))
        down = bool(want)
    if down:
        changes.append((float((on + dur).max()), 0))
    return on, dur, vel, changes


def to_score(s: ScoreNotes, on: np.ndarray, dur: np.ndarray, vel: np.ndarray,
             pedal: list[tuple[float, int]], source: str | None = None) -> Score:
    notes = [Note(int(s.pitch[i]), round(on[i] * 1e6), max(1, round(dur[i] * 1e6)), int(vel[i]),
                  track=int(s.staff[i] == 2)) for i in range(len(s.pitch))]
    return Score(notes=notes, pedal=[PedalEvent(round(t * 1e6), v) for t, v in pedal], source=source)


# ---------------------------------------------------------------- measures for eval-model


@dataclass(slots=True)
class Measures:
    """What a rendering is compared on: velocity and articulation per note (NaN where not
    played), log inter-beat interval per quarter-note beat of the score (NaN where unknown)."""

    velocity: np.ndarray
    articulation: np.ndarray
    beat_log_ibi: np.ndarray


def measures(onset_q: np.ndarray, dur_q: np.ndarray, on_s: np.ndarray, dur_s: np.ndarray,
             vel: np.ndarray, ok: np.ndarray, beats: np.ndarray) -> Measures:
    """The :class:`Measures` of one rendering or performance of a score, on the beat grid
    ``beats`` (quarters)."""
    gq, gt = _group_times(onset_q, on_s, ok)
    ibi = np.full(max(len(beats) - 1, 0), np.nan)
    art = np.full(len(onset_q), np.nan)
    if len(gq) >= 2:
        inside = (beats >= gq[0]) & (beats <= gq[-1])
        tb = np.where(inside, np.interp(beats, gq, gt), np.nan)
        d = np.diff(tb)
        with np.errstate(invalid="ignore", divide="ignore"):
            ibi = np.where(d > 0, np.log(np.where(d > 0, d, 1.0)), np.nan)
        spq = local_spq(onset_q, gq, gt)
        with np.errstate(invalid="ignore", divide="ignore"):
            art = np.where(ok, np.log(np.maximum(dur_s, 0.02) / np.maximum(dur_q * spq, 0.02)), np.nan)
    v = np.where(ok, vel.astype(float), np.nan)
    return Measures(v, art, ibi)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the entries finite in both; NaN when fewer than 3 or one is constant."""
    sel = np.isfinite(a) & np.isfinite(b)
    if sel.sum() < 3:
        return float("nan")
    x, y = a[sel] - a[sel].mean(), b[sel] - b[sel].mean()
    if x.std() < 1e-4 or y.std() < 1e-4:  # a constant (up to rounding) predicts nothing
        return float("nan")
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


# ---------------------------------------------------------------- the beat level (tempo)

# per beat: the mean of its notes' features, then (N_FEATURES..) its notes and onset groups,
# the notated log inter-beat interval against the piece's median and its changes, the
# beat's place in its bar and in the piece
N_BEAT_FEATURES = N_FEATURES + 13
BEAT_NOTATED = N_FEATURES + 3  # the column of the notated log inter-beat interval


def beat_grid(onset_q: np.ndarray) -> np.ndarray:
    """The score's quarter-note beats (quarters) from the first whole quarter to the last:
    what ``eval-model`` measures beat tempo on (one inter-beat interval between each two)."""
    if len(onset_q) == 0:
        return np.zeros(0)
    return np.arange(np.ceil(float(onset_q.min())), np.floor(float(onset_q.max())) + 1, 1.0)


def beat_of(onset_q: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Each note's inter-beat interval (0..len(beats)-2): the one its onset falls in (the
    first for a pickup before the first beat, the last for the last beat's notes)."""
    k = np.searchsorted(beats, onset_q, side="right") - 1
    return np.clip(k, 0, max(len(beats) - 2, 0))


def notated_beat_log_ibi(s: ScoreNotes, beats: np.ndarray) -> np.ndarray:
    """log seconds of each notated inter-beat interval (the tempo marks; as measured)."""
    m = len(s.pitch)
    return measures(s.onset_q, s.dur_q, notated_times(s), s.dur_q * s.sec_per_q, np.zeros(m),
                    np.ones(m, bool), beats).beat_log_ibi


def beat_features(s: ScoreNotes, note_f: np.ndarray | None = None) -> np.ndarray:
    """(K, N_BEAT_FEATURES) float32, one row per inter-beat interval of :func:`beat_grid`
    (K = beats - 1; 0 rows for a score under two beats long)."""
    beats = beat_grid(s.onset_q)
    k_n = max(len(beats) - 1, 0)
    f = np.zeros((k_n, N_BEAT_FEATURES), np.float32)
    if k_n == 0:
        return f
    nf = features(s) if note_f is None else note_f
    kb = beat_of(s.onset_q, beats)
    cnt = np.bincount(kb, minlength=k_n).astype(float)
    sums = np.zeros((k_n, N_FEATURES))
    np.add.at(sums, kb, nf[:, :N_FEATURES])
    f[:, :N_FEATURES] = sums / np.maximum(cnt, 1)[:, None]
    q, inv = groups(s.onset_q)
    n_groups = np.bincount(beat_of(q, beats), minlength=k_n).astype(float)
    c = N_FEATURES
    f[:, c] = np.log1p(cnt) / 3
    f[:, c + 1] = np.log1p(n_groups) / 2
    f[:, c + 2] = cnt > 0
    lib = notated_beat_log_ibi(s, beats)
    lib = np.where(np.isfinite(lib), lib - np.nanmedian(lib) if np.isfinite(lib).any() else 0.0, 0.0)
    lib = np.clip(lib, -1.5, 1.5)
    f[:, c + 3] = lib
    f[:, c + 4] = np.r_[lib[1:], lib[-1]] - lib
    f[:, c + 5] = lib - np.r_[lib[0], lib[:-1]]
    f[:, c + 6] = lib[np.minimum(np.arange(k_n) + 4, k_n - 1)] - lib
    # the beat's place in its bar, from the last note at or before it (else the first note)
    i = np.clip(np.searchsorted(s.onset_q, beats[:-1], side="right") - 1, 0, len(s.onset_q) - 1)
    bar_len = np.maximum(s.bar_len_q[i], 1e-3)
    pos = np.mod(s.bar_pos_q[i] + beats[:-1] - s.onset_q[i], bar_len)
    f[:, c + 7] = np.sin(2 * np.pi * pos / bar_len)
    f[:, c + 8] = np.cos(2 * np.pi * pos / bar_len)
    f[:, c + 9] = (pos < 1e-3) | (bar_len - pos < 1e-3)
    f[:, c + 10] = bar_len / 4
    f[:, c + 11] = np.arange(k_n) / max(k_n - 1, 1)
    f[:, c + 12] = np.log2(1 + (k_n - 1 - np.arange(k_n))) / 8  # beats to the end
    return f


def beat_targets(p: object) -> tuple[np.ndarray, np.ndarray]:
    """Each inter-beat interval's log tempo deviation from the notated one (K,) float32, as
    ``eval-model`` measures beat tempo (its human side: every played note), minus the
    performance's median; and where it is known (K,) bool."""
    beats = beat_grid(p.onset_q)  # type: ignore[attr-defined]
    ok = p.p_vel >= 0  # type: ignore[attr-defined]
    human = measures(p.onset_q, p.dur_q, p.p_onset_s, p.p_dur_s, p.p_vel, ok,  # type: ignore[attr-defined]
                     beats).beat_log_ibi
    dev = human - notated_beat_log_ibi(from_performance(p), beats)
    known = np.isfinite(dev)
    y = np.zeros(len(dev), np.float32)
    if known.sum() >= 2:
        y[known] = np.clip(dev[known] - np.median(dev[known]), -1.0, 1.0)
    return y, known
