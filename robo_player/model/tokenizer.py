"""Performance-event tokenizer: Performance RNN's 388 events plus the sustain pedal.

Vocabulary (token ids, 390 in all, :data:`VOCAB_SIZE`):

====================  =========  ==============================================
event                 ids        meaning
====================  =========  ==============================================
NOTE_ON(p)            0..127     key ``p`` goes down at the current time
NOTE_OFF(p)           128..255   key ``p`` comes up
TIME_SHIFT(k)         256..355   advance time by ``k+1`` steps of 10 ms (10..1000 ms)
VELOCITY(b)           356..387   later note-ons use velocity bin ``b`` (32 bins)
PEDAL_ON / PEDAL_OFF  388, 389   sustain pedal (CC64) down / up (threshold 64)
====================  =========  ==============================================

Times are quantised to 10 ms and velocities to 32 bins, as in Performance RNN, so NLL
numbers compare with the published ones. Within one time step the order is canonical:
note-offs (by pitch), pedal, then for each note-on (by pitch) a VELOCITY event when its
bin differs from the current one. So :func:`decode` then :func:`encode` gives back the
same tokens, and a quantised score round-trips exactly (see ``tests/test_model_tokenizer.py``).

Pure Python + numpy: importing this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import ModelError
from ..score import Note, PedalEvent, Score

TOKENIZER_VERSION = "perf390-v1"

STEP_US = 10_000  # one time-shift step: 10 ms
N_PITCH = 128
N_SHIFT = 100  # shifts of 1..100 steps
N_VEL = 32

NOTE_ON = 0
NOTE_OFF = NOTE_ON + N_PITCH  # 128
TIME_SHIFT = NOTE_OFF + N_PITCH  # 256
VELOCITY = TIME_SHIFT + N_SHIFT  # 356
PEDAL_ON = VELOCITY + N_VEL  # 388
PEDAL_OFF = PEDAL_ON + 1  # 389
VOCAB_SIZE = PEDAL_OFF + 1  # 390
BOS = VOCAB_SIZE  # the networks' input-only start token (never an output)

PEDAL_THRESHOLD = 64  # CC64 value at and above which the pedal counts as down
DEFAULT_VELOCITY_BIN = 15  # bin in force before the first VELOCITY event (MIDI ~64)


def velocity_to_bin(velocity: int) -> int:
    """MIDI velocity 1..127 -> bin 0..31 (values outside are clamped)."""
    v = min(127, max(1, int(velocity)))
    return (v - 1) * N_VEL // 127


def bin_to_velocity(b: int) -> int:
    """Bin 0..31 -> the middle MIDI velocity of that bin (so velocity_to_bin inverts it)."""
    if not 0 <= b < N_VEL:
        raise ModelError(f"velocity bin {b} out of range (allowed 0..{N_VEL - 1})")
    lo = -(-b * 127 // N_VEL) + 1  # smallest velocity in the bin
    hi = -(-(b + 1) * 127 // N_VEL)  # largest
    return (lo + hi) // 2


def quantize_us(t_us: int) -> int:
    """Microseconds -> nearest 10 ms step (half up)."""
    return (int(t_us) + STEP_US // 2) // STEP_US


def token_name(tok: int) -> str:
    """Human-readable name of one token, e.g. ``NOTE_ON(60)`` or ``SHIFT(120ms)``."""
    if NOTE_ON <= tok < NOTE_OFF:
        return f"NOTE_ON({tok - NOTE_ON})"
    if NOTE_OFF <= tok < TIME_SHIFT:
        return f"NOTE_OFF({tok - NOTE_OFF})"
    if TIME_SHIFT <= tok < VELOCITY:
        return f"SHIFT({(tok - TIME_SHIFT + 1) * STEP_US // 1000}ms)"
    if VELOCITY <= tok < PEDAL_ON:
        return f"VELOCITY({tok - VELOCITY})"
    if tok == PEDAL_ON:
        return "PEDAL_ON"
    if tok == PEDAL_OFF:
        return "PEDAL_OFF"
    raise ModelError(f"token {tok} out of range (allowed 0..{VOCAB_SIZE - 1})")


def _shift_tokens(steps: int, out: list[int]) -> None:
    while steps > 0:
        k = min(steps, N_SHIFT)
        out.append(TIME_SHIFT + k - 1)
        steps -= k


def quantized_notes(score: Score) -> list[tuple[int, int, int, int]]:
    """Notes as ``(on_step, off_step, pitch, velocity_bin)``, cleaned up for encoding.

    Onsets and ends are rounded to 10 ms steps; a note lasts at least one step; a note
    that starts while the same key is still down ends the earlier one (a key cannot be
    struck twice without coming up); of two notes on one key at one step, the later in
    the score's order is dropped.
    """
    by_pitch: dict[int, list[tuple[int, int, int]]] = {}
    for n in score.notes:
        if not 0 <= n.pitch < N_PITCH:
            continue
        on = quantize_us(n.onset_us)
        off = max(on + 1, quantize_us(n.end_us))
        by_pitch.setdefault(n.pitch, []).append((on, off, velocity_to_bin(n.velocity)))
    out: list[tuple[int, int, int, int]] = []
    for pitch, lst in by_pitch.items():
        lst.sort(key=lambda x: x[0])
        for i, (on, off, vb) in enumerate(lst):
            if i > 0 and lst[i - 1][0] == on:
                continue  # same key struck twice at one step: keep the first
            j = i + 1
            while j < len(lst) and lst[j][0] == on:
                j += 1
            if j < len(lst):
                off = min(off, lst[j][0])
            out.append((on, off, pitch, vb))
    out.sort(key=lambda x: (x[0], x[2]))
    return out


def _pedal_steps(score: Score) -> list[tuple[int, bool]]:
    """Pedal changes as ``(step, down)``, only where the quantised state changes; of
    several changes within one step the last one wins."""
    last: dict[int, bool] = {}
    for p in score.pedal:  # sorted by time, so later values overwrite earlier ones
        last[quantize_us(p.t_us)] = p.value >= PEDAL_THRESHOLD
    out: list[tuple[int, bool]] = []
    down = False
    for step in sorted(last):
        if last[step] != down:
            down = last[step]
            out.append((step, down))
    return out


def encode(score: Score) -> list[int]:
    """Score -> token ids (see the module docstring for the vocabulary and order)."""
    # (step, kind, pitch, vbin): kind 0 = note-off, 1 = pedal, 2 = note-on
    events: list[tuple[int, int, int, int]] = []
    for on, off, pitch, vb in quantized_notes(score):
        events.append((on, 2, pitch, vb))
        events.append((off, 0, pitch, 0))
    for step, down in _pedal_steps(score):
        events.append((step, 1, 1 if down else 0, 0))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    toks: list[int] = []
    now = 0
    vbin = DEFAULT_VELOCITY_BIN
    for step, kind, a, vb in events:
        if step > now:
            _shift_tokens(step - now, toks)
            now = step
        if kind == 0:
            toks.append(NOTE_OFF + a)
        elif kind == 1:
            toks.append(PEDAL_ON if a else PEDAL_OFF)
        else:
            if vb != vbin:
                toks.append(VELOCITY + vb)
                vbin = vb
            toks.append(NOTE_ON + a)
    return toks


def decode(tokens: Iterable[int], source: str | None = None) -> Score:
    """Token ids -> Score. Orphan note-offs are ignored; keys still down at the end are
    released at the final time (at least one step after their onset)."""
    now = 0
    vbin = DEFAULT_VELOCITY_BIN
    active: dict[int, tuple[int, int]] = {}  # pitch -> (on_step, velocity)
    notes: list[Note] = []
    pedal: list[PedalEvent] = []
    pedal_down = False
    for i, tok in enumerate(tokens):
        tok = int(tok)
        if NOTE_ON <= tok < NOTE_OFF:
            p = tok - NOTE_ON
            if p in active:  # re-strike without release: end the earlier note here
                on, vel = active.pop(p)
                if now > on:
                    notes.append(Note(p, on * STEP_US, (now - on) * STEP_US, vel))
            active[p] = (now, bin_to_velocity(vbin))
        elif NOTE_OFF <= tok < TIME_SHIFT:
            p = tok - NOTE_OFF
            if p in active:
                on, vel = active.pop(p)
                notes.append(Note(p, on * STEP_US, max(1, now - on) * STEP_US, vel))
        elif TIME_SHIFT <= tok < VELOCITY:
            now += tok - TIME_SHIFT + 1
        elif VELOCITY <= tok < PEDAL_ON:
            vbin = tok - VELOCITY
        elif tok == PEDAL_ON or tok == PEDAL_OFF:
            down = tok == PEDAL_ON
            if down != pedal_down:
                pedal.append(PedalEvent(now * STEP_US, 127 if down else 0))
                pedal_down = down
        else:
            raise ModelError(f"token[{i}] = {tok} out of range (allowed 0..{VOCAB_SIZE - 1})")
    for p, (on, vel) in active.items():
        notes.append(Note(p, on * STEP_US, max(1, now - on) * STEP_US, vel))
    return Score(notes=notes, pedal=pedal, source=source)


def count_notes(tokens: Sequence[int] | np.ndarray) -> int:
    """Number of NOTE_ON events (the denominator of nats per note)."""
    arr = np.asarray(tokens)
    return int(np.count_nonzero(arr < NOTE_OFF))


def transpose_tokens(tokens: np.ndarray, semitones: int) -> np.ndarray | None:
    """Shift every note event by ``semitones``; None when a pitch would leave 0..127."""
    arr = np.asarray(tokens, dtype=np.int16)
    on = arr < NOTE_OFF
    off = (arr >= NOTE_OFF) & (arr < TIME_SHIFT)
    notes = on | off
    if not notes.any() or semitones == 0:
        return arr.copy()
    pitches = np.where(on, arr - NOTE_ON, arr - NOTE_OFF)[notes]
    lo, hi = int(pitches.min()) + semitones, int(pitches.max()) + semitones
    if lo < 0 or hi >= N_PITCH:
        return None
    out = arr.copy()
    out[notes] += semitones
    return out


def stretch_score(score: Score, factor: float) -> Score:
    """Tempo stretch: every time and duration multiplied by ``factor`` (> 0)."""
    if not factor > 0:
        raise ModelError(f"tempo stretch factor {factor} must be > 0")
    notes = [
        Note(n.pitch, round(n.onset_us * factor), max(1, round(n.duration_us * factor)),
             n.velocity, n.channel, n.track)
        for n in score.notes
    ]
    pedal = [PedalEvent(round(p.t_us * factor), p.value, p.channel) for p in score.pedal]
    return Score(notes=notes, pedal=pedal, ticks_per_beat=score.ticks_per_beat, source=score.source)


def check_grammar(tokens: Sequence[int]) -> list[str]:
    """Problems with a token sequence: orphan note-offs, double note-ons, keys left down.

    Empty for a well-formed performance (what constrained decoding guarantees).
    """
    problems: list[str] = []
    active: set[int] = set()
    for i, tok in enumerate(tokens):
        tok = int(tok)
        if not 0 <= tok < VOCAB_SIZE:
            problems.append(f"token[{i}] = {tok} out of range")
        elif tok < NOTE_OFF:
            if tok in active:
                problems.append(f"token[{i}]: NOTE_ON({tok}) while key {tok} is down")
            active.add(tok)
        elif tok < TIME_SHIFT:
            p = tok - NOTE_OFF
            if p not in active:
                problems.append(f"token[{i}]: orphan NOTE_OFF({p})")
            active.discard(p)
    for p in sorted(active):
        problems.append(f"end: key {p} left down (stuck note)")
    return problems


# ---------------------------------------------------------------- state features

# What a performer knows at each point of the event stream, as a compact uint8 row the
# networks can read beside the event itself (``ModelConfig.features``). Row ``i`` is the
# state after ``tokens[:i]``, i.e. what is known when ``tokens[i]`` is predicted, so it is
# a function of the past only and NLL stays a proper autoregressive likelihood.
#
#   [0:128]  per key: 0 = up, else 1 + steps it has been down (capped at 254)
#   [128]    steps since the last note-on (255: none yet / capped)
#   [129]    the last inter-onset interval: steps between the two latest onset times (255: none)
N_STATE = N_PITCH + 2
_CAP = 255


def state_codes(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """``(len(tokens), N_STATE)`` uint8 state rows (see above); vectorised numpy."""
    t = np.asarray(tokens, dtype=np.int64)
    n = len(t)
    out = np.zeros((n, N_STATE), dtype=np.uint8)
    if n == 0:
        return out
    shift = np.where((t >= TIME_SHIFT) & (t < VELOCITY), t - TIME_SHIFT + 1, 0)
    now = np.concatenate([[0], np.cumsum(shift)[:-1]])  # time of token i = time after tokens[:i]
    is_on = t < NOTE_OFF
    is_off = (t >= NOTE_OFF) & (t < TIME_SHIFT)
    pitch = np.where(is_on, t, np.where(is_off, t - NOTE_OFF, -1))
    # per key, index of its latest note event strictly before row i (exclusive forward fill)
    ev = np.full((n + 1, N_PITCH), -1, dtype=np.int64)
    rows = np.flatnonzero(pitch >= 0)
    ev[rows + 1, pitch[rows]] = rows
    ev = np.maximum.accumulate(ev, axis=0)[:n]  # (n, 128): row i sees tokens[:i]
    has = ev >= 0
    held = has & is_on[np.where(has, ev, 0)]
    elapsed = now[:, None] - now[np.where(held, ev, 0)]
    out[:, :N_PITCH] = np.where(held, 1 + np.minimum(elapsed, _CAP - 1), 0)
    # since the last note-on, and the last inter-onset interval
    on_rows = np.flatnonzero(is_on)
    if len(on_rows):
        on_t = now[on_rows]
        new_group = np.concatenate([[True], on_t[1:] != on_t[:-1]])
        group_t = on_t[new_group]
        gi = np.cumsum(new_group) - 1  # onset group of each note-on
        prev_t = np.where(gi > 0, group_t[np.maximum(gi - 1, 0)], -1)
        ioi = np.where(prev_t >= 0, np.minimum(on_t - prev_t, _CAP), _CAP)
        k = np.searchsorted(on_rows, np.arange(n), side="left") - 1  # last note-on before row i
        ok = k >= 0
        kk = np.maximum(k, 0)
        out[:, N_PITCH] = np.where(ok, np.minimum(now - on_t[kk], _CAP), _CAP)
        out[:, N_PITCH + 1] = np.where(ok, ioi[kk], _CAP)
    else:
        out[:, N_PITCH:] = _CAP
    return out


class StateTracker:
    """The same rows as :func:`state_codes`, one event at a time (for decoding)."""

    def __init__(self) -> None:
        self.now = 0
        self.onset: dict[int, int] = {}
        self.last_on = -1
        self.prev_group = -1  # onset time of the group before the latest one

    def codes(self) -> np.ndarray:
        row = np.zeros(N_STATE, dtype=np.uint8)
        for p, t0 in self.onset.items():
            row[p] = 1 + min(self.now - t0, _CAP - 1)
        if self.last_on < 0:
            row[N_PITCH:] = _CAP
        else:
            row[N_PITCH] = min(self.now - self.last_on, _CAP)
            row[N_PITCH + 1] = min(self.last_on - self.prev_group, _CAP) if self.prev_group >= 0 else _CAP
        return row

    def apply(self, tok: int) -> None:
        if NOTE_ON <= tok < NOTE_OFF:
            self.onset[tok] = self.now
            if self.now != self.last_on:
                self.prev_group = self.last_on
                self.last_on = self.now
        elif NOTE_OFF <= tok < TIME_SHIFT:
            self.onset.pop(tok - NOTE_OFF, None)
        elif TIME_SHIFT <= tok < VELOCITY:
            self.now += tok - TIME_SHIFT + 1
