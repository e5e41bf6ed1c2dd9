"""Model-based expressive rendering: a performance model chooses a plain score's dynamics
and small timing shifts.

The score's own event stream (the tokenizer's canonical order) is fed to the model
teacher-forced; only two things are left for the model to choose:

- **velocity** of each note-on. The stream puts a VELOCITY(b) event before a note-on only
  when the bin changes, and the model predicts it *before* it sees the note's pitch. So
  the choice conditions on the pitch the score says comes next (Bayes):
  ``P(bin b | next note p) ~ P(VELOCITY b) * P(NOTE_ON p | VELOCITY b)`` for a new bin,
  and ``P(NOTE_ON p)`` for keeping the current one. Candidate bins are scored in order of
  their prior ``P(VELOCITY b)`` and the scan stops when the unscored prior mass is below
  ``prune`` times the scored mass (it bounds what the rest could add, since
  ``P(NOTE_ON p | .) <= 1``).
- **onset shift** of each onset group (the notes that share one 10 ms step): the group
  may start up to ``max_shift_ms`` (in 10 ms steps) before or after the score's time.
  Each candidate time ``t`` is scored by the log-probability of the events the stream
  then has before the onset (time shifts, note-offs and pedal changes falling before
  ``t``) plus the log-probability that an onset comes next (a VELOCITY event or the
  group's lowest NOTE_ON). Chords move together; groups never swap or merge (a group
  starts at least one step, and at least half its score inter-onset interval, after the
  one before); a note keeps its duration (its end moves with its onset), shortened
  only where it would now overlap the next strike of its own key.

Choices are sampled at ``temperature`` from a ``numpy.random.default_rng(seed)``, so a
rendering is deterministic for a given seed; temperature 0 takes the most likely choice.

The model is driven through :func:`robo_player.model.generate.stepper_for` and its
``step(tok, state) -> (logits, state)``; this module is numpy only (``load_model`` in
:func:`perform_from_file` is where torch comes in).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, UsageError
from ..score import Note, PedalEvent, Score
from . import tokenizer as tk
from .generate import BOS, stepper_for

log = logging.getLogger(__name__)

MAX_SHIFT_MS = 100  # the largest onset shift an option may ask for
MAX_TEMPERATURE = 5.0


@dataclass(frozen=True, slots=True)
class ModelRenderOptions:
    temperature: float = 1.0  # 0 = most likely choice
    max_shift_ms: int = 30  # onset groups may move this far (rounded down to 10 ms steps); 0 = off
    seed: int = 0
    prune: float = 1e-3  # velocity candidates: stop when unscored prior mass < prune x scored

    def __post_init__(self) -> None:
        t = self.temperature
        if not (isinstance(t, int | float) and math.isfinite(t) and 0.0 <= t <= MAX_TEMPERATURE):
            raise UsageError(f"--temperature {t}: out of range (allowed 0..{MAX_TEMPERATURE:g})")
        if not (isinstance(self.max_shift_ms, int | float) and 0 <= self.max_shift_ms <= MAX_SHIFT_MS):
            raise UsageError(f"--max-shift-ms {self.max_shift_ms}: out of range (allowed 0..{MAX_SHIFT_MS})")
        if not 0.0 < self.prune < 1.0:
            raise UsageError(f"prune {self.prune}: out of range (allowed 0 < prune < 1)")

    @property
    def max_shift_steps(self) -> int:
        return int(self.max_shift_ms * 1000) // tk.STEP_US


@dataclass(slots=True)
class ModelRendering:
    """A model rendering and what it chose."""

    score: Score
    velocity_bins: list[int]  # chosen bin per note, in the input's note order
    shift_steps: list[int]  # per onset group: performed step - score step (10 ms steps)
    steps: int  # model steps taken (scoring included)
    wall_s: float
    log_prob: float = 0.0  # sum of the chosen options' log-probabilities
    velocity_changes: int = 0  # VELOCITY events the model put in the stream
    notes_trimmed: int = 0  # notes shortened to end before the next strike of their key
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- model plumbing


def _fork(state: Any) -> Any:
    """A copy of a stepper state that can be stepped without touching the original.

    Arrays and tensors in a state are never changed in place by ``step`` (it builds new
    ones); the event-state tracker of a features model is, so it is copied.
    """
    if isinstance(state, tk.StateTracker):
        return copy.deepcopy(state)
    if isinstance(state, list):
        return [_fork(s) for s in state]
    if isinstance(state, tuple):
        return tuple(_fork(s) for s in state)
    return state


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)[: tk.VOCAB_SIZE]
    m = float(z.max())
    return z - (m + math.log(float(np.exp(z - m).sum())))


class _Model:
    """The stepper, with log-probabilities and a step counter."""

    def __init__(self, stepper: Any) -> None:
        self.stepper = stepper
        self.steps = 0

    def step(self, tok: int, state: Any) -> tuple[np.ndarray, Any]:
        """``(log-probabilities (V,), new state)``; ``state`` itself is left as it was."""
        logits, new = self.stepper.step(int(tok), _fork(state))
        self.steps += 1
        logits = np.asarray(logits)
        if logits.ndim != 1 or logits.shape[0] < tk.VOCAB_SIZE:
            raise ModelError(f"model: step returned logits of shape {logits.shape}, "
                             f"expected ({tk.VOCAB_SIZE},) for tokenizer {tk.TOKENIZER_VERSION}")
        return _log_softmax(logits), new

    def run(self, lp: np.ndarray, state: Any, path: list[int]) -> tuple[float, np.ndarray, Any]:
        """Feed ``path`` from ``(lp, state)``: ``(sum of log P(path), lp after, state after)``."""
        total = 0.0
        for tok in path:
            total += float(lp[tok])
            lp, state = self.step(tok, state)
        return total, lp, state


def _choose(scores: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Index of the chosen option: argmax at temperature 0 (first on ties), else sampled
    from ``softmax(scores / temperature)``."""
    if temperature <= 0.0:
        return int(np.argmax(scores))
    z = (scores - scores.max()) / temperature
    p = np.exp(z)
    c = np.cumsum(p / p.sum())
    return min(int(np.searchsorted(c, rng.random(), side="right")), len(scores) - 1)


def _shift_path(steps: int) -> list[int]:
    out: list[int] = []
    while steps > 0:
        k = min(steps, tk.N_SHIFT)
        out.append(tk.TIME_SHIFT + k - 1)
        steps -= k
    return out


# ---------------------------------------------------------------- the score's structure


@dataclass(slots=True)
class _Group:
    step: int  # score onset, 10 ms steps
    notes: list[int]  # indices into score.notes
    stream: list[tuple[int, int]]  # (pitch, off_step in score steps) fed to the model, by pitch


def _groups(score: Score) -> tuple[list[_Group], dict[int, int]]:
    """Onset groups, and for each note left out of the stream (a second strike of one key
    at one step) the index of the note that stands for it."""
    notes = score.notes
    q_on = [tk.quantize_us(n.onset_us) for n in notes]
    q_off = [max(q_on[i] + 1, tk.quantize_us(n.end_us)) for i, n in enumerate(notes)]
    # a key struck again ends its earlier note there (as the tokenizer does)
    by_pitch: dict[int, list[int]] = {}
    for i, n in enumerate(notes):
        by_pitch.setdefault(n.pitch, []).append(i)
    for idx in by_pitch.values():
        idx.sort(key=lambda i: (q_on[i], i))
        for a, b in zip(idx, idx[1:], strict=False):
            if q_on[b] > q_on[a]:
                q_off[a] = min(q_off[a], q_on[b])
    groups: list[_Group] = []
    stand_in: dict[int, int] = {}
    seen: dict[tuple[int, int], int] = {}
    for i, n in enumerate(notes):
        if not groups or groups[-1].step != q_on[i]:
            if groups and q_on[i] < groups[-1].step:
                raise ModelError(f"{score.source or 'score'}: note {i + 1} is out of order "
                                 f"(internal error: Score keeps notes sorted)")
            groups.append(_Group(q_on[i], [], []))
        g = groups[-1]
        g.notes.append(i)
        key = (q_on[i], n.pitch)
        if key in seen:
            stand_in[i] = seen[key]
            continue
        seen[key] = i
        g.stream.append((n.pitch, q_off[i]))
    for g in groups:
        g.stream.sort()
    return groups, stand_in


# ---------------------------------------------------------------- rendering


def perform_with_model(score: Score, model: Any, options: ModelRenderOptions | None = None) -> ModelRendering:
    """Render ``score`` with ``model`` (a loaded network, or anything with ``step(tok, state)``
    like :func:`~robo_player.model.generate.stepper_for` returns); see the module docstring."""
    opts = options or ModelRenderOptions()
    if not score.notes:
        raise ModelError(f"{score.source or 'score'}: no notes to perform")
    stepper = model if hasattr(model, "step") and not hasattr(model, "config") else stepper_for(model)
    net = _Model(stepper)
    rng = np.random.default_rng(opts.seed)
    t0 = time.perf_counter()
    m = opts.max_shift_steps
    groups, stand_in = _groups(score)
    notes = score.notes

    # pedal changes, each tied to the onset group at or before it (it moves with that group)
    pedal_at: list[tuple[int, int, bool]] = []  # (group index or -1, score step, down)
    gi = -1
    for pe in score.pedal:
        ps = tk.quantize_us(pe.t_us)
        while gi + 1 < len(groups) and groups[gi + 1].step <= ps:
            gi += 1
        pedal_at.append((gi, ps, pe.value >= tk.PEDAL_THRESHOLD))
    pedal_step = [0] * len(pedal_at)  # performed step of each pedal event

    lp, state = net.step(BOS, None)
    now = 0  # performed time of the stream, 10 ms steps
    vbin = tk.DEFAULT_VELOCITY_BIN
    pedal_down = False
    held: dict[int, int] = {}  # pitch -> performed off step
    note_bin = [0] * len(notes)
    shift_steps: list[int] = []
    total_lp = 0.0
    changes = 0
    prev_t, prev_s = -1, -1
    pi = 0  # next pedal event not yet in the stream

    def path_to(t: int, g: int, group_pitches: set[int]) -> tuple[list[int], list[int], dict[int, int]]:
        """Tokens from ``now`` up to an onset at performed step ``t`` (the note-offs and
        pedal changes due first, in canonical order), the performed steps of the pedal
        events it places, and the keys it releases."""
        ev: list[tuple[int, int, int, int]] = []  # (step, kind 0 off / 1 pedal, order, payload)
        for p, off in held.items():
            if off <= t or p in group_pitches:
                ev.append((min(off, t), 0, p, p))
        placed: list[int] = []
        last = now
        j = pi
        while j < len(pedal_at) and (pedal_at[j][0] < g or pedal_at[j][1] == groups[g].step):
            gj, s, _down = pedal_at[j]
            if gj == g:  # at this onset's own step: just before its note-ons
                st = t
            else:  # tied to an earlier group: moves with it, but stays before this onset
                d = shift_steps[gj] if gj >= 0 else 0
                lo = (prev_t + 1) if gj >= 0 and s > groups[gj].step else max(prev_t, 0)
                st = max(lo, min(s + d, t - 1))
            st = max(st, last)
            last = st
            placed.append(st)
            ev.append((st, 1, j, j))
            j += 1
        ev.sort()
        toks: list[int] = []
        cur = now
        down = pedal_down
        released: dict[int, int] = {}
        for st, kind, _o, payload in ev:
            toks += _shift_path(st - cur)
            cur = st
            if kind == 0:
                toks.append(tk.NOTE_OFF + payload)
                released[payload] = st
            else:
                want = pedal_at[payload][2]
                if want != down:
                    toks.append(tk.PEDAL_ON if want else tk.PEDAL_OFF)
                    down = want
        toks += _shift_path(t - cur)
        return toks, placed, released

    for g, grp in enumerate(groups):
        s = grp.step
        pitches = {p for p, _ in grp.stream}
        lo = max(0, s - m)
        if g > 0:
            lo = max(lo, prev_t + max(1, -(-(s - prev_s) // 2)))
        hi = max(lo, s + m)
        cands = sorted(range(lo, hi + 1), key=lambda t: (abs(t - s), t))
        p0 = grp.stream[0][0]
        if len(cands) == 1:
            t = cands[0]
            toks, placed, released = path_to(t, g, pitches)
            gain, lp, state = net.run(lp, state, toks)
            total_lp += gain
        else:
            memo: dict[tuple[int, ...], tuple[float, np.ndarray, Any]] = {(): (0.0, lp, state)}
            scored: list[tuple[float, np.ndarray, Any, list[int], list[int], dict[int, int]]] = []
            for t in cands:
                toks, placed, released = path_to(t, g, pitches)
                k = len(toks)
                while tuple(toks[:k]) not in memo:
                    k -= 1
                acc, lp_k, st_k = memo[tuple(toks[:k])]
                for i in range(k, len(toks)):
                    acc += float(lp_k[toks[i]])
                    lp_k, st_k = net.step(toks[i], st_k)
                    memo[tuple(toks[: i + 1])] = (acc, lp_k, st_k)
                vel = np.r_[lp_k[tk.VELOCITY:tk.PEDAL_ON][np.arange(tk.N_VEL) != vbin], lp_k[tk.NOTE_ON + p0]]
                onset = float(np.logaddexp.reduce(vel))
                tail = _horizon(net, lp_k, st_k, t, hi, sorted(pitches), held, released)
                scored.append((acc + onset + tail, lp_k, st_k, placed, toks, released))
            scores = np.array([x[0] for x in scored])
            c = _choose(scores, opts.temperature, rng)
            t = cands[c]
            _, lp, state, placed, toks, released = scored[c]
            total_lp += float(scores[c] - np.logaddexp.reduce(scores))
        for p in released:
            held.pop(p, None)
        for st in placed:
            pedal_step[pi] = st
            pedal_down = pedal_at[pi][2]
            pi += 1
        now = t
        shift_steps.append(t - s)
        prev_t, prev_s = t, s

        # velocities, note by note in the stream's order
        bin_of: dict[int, int] = {}
        for p, off in grp.stream:
            on_tok = tk.NOTE_ON + p
            stay = float(lp[on_tok])
            prior = lp[tk.VELOCITY:tk.PEDAL_ON]
            order = [int(b) for b in np.argsort(-prior, kind="stable") if b != vbin]
            remaining = float(np.exp(prior[order]).sum())
            opt_bins: list[int] = [vbin]
            opt_scores: list[float] = [stay]
            branches: list[tuple[np.ndarray, Any]] = [(lp, state)]  # placeholder for "keep the bin"
            mass = math.exp(stay)
            for b in order:
                if remaining < opts.prune * mass:
                    break
                remaining -= math.exp(float(prior[b]))
                lp_b, st_b = net.step(tk.VELOCITY + b, state)
                lp_on, st_on = net.step(on_tok, st_b)
                sc = float(prior[b] + lp_b[on_tok])
                opt_bins.append(b)
                opt_scores.append(sc)
                branches.append((lp_on, st_on))
                mass += math.exp(sc)
            sc_arr = np.array(opt_scores)
            c = _choose(sc_arr, opts.temperature, rng)
            total_lp += float(sc_arr[c] - np.logaddexp.reduce(sc_arr))
            if c == 0:
                lp, state = net.step(on_tok, state)
            else:
                vbin = opt_bins[c]
                changes += 1
                lp, state = branches[c]
            bin_of[p] = vbin
            held[p] = t + (off - s)
        for i in grp.notes:
            note_bin[i] = bin_of[notes[stand_in.get(i, i)].pitch]

    # pedal changes after the last onset move with it
    while pi < len(pedal_at):
        gj, s, _down = pedal_at[pi]
        d = shift_steps[gj] if gj >= 0 else 0
        st = max(s + d, prev_t + 1 if gj >= 0 and s > groups[gj].step else prev_t, 0)
        pedal_step[pi] = max(st, pedal_step[pi - 1] if pi else 0)
        pi += 1
    wall = time.perf_counter() - t0
    out, trimmed = _assemble(score, groups, shift_steps, pedal_at, pedal_step, note_bin)
    log.info("model rendering: %d notes, %d model steps in %.2fs, %d velocity changes, %d trimmed",
             len(notes), net.steps, wall, changes, trimmed)
    return ModelRendering(out, note_bin, shift_steps, net.steps,
                          wall, total_lp, changes, trimmed)


def _horizon(net: _Model, lp: np.ndarray, state: Any, t: int, horizon: int, pitches: list[int],
             held: dict[int, int], released: dict[int, int]) -> float:
    """Log-probability of what the stream holds from an onset at ``t`` up to ``horizon``
    (the latest candidate time): the note-offs of older notes due by then, then nothing
    else before ``horizon``. So every candidate is scored on the same events (a candidate
    that comes early is not favoured for leaving note-offs unscored). The group's
    note-ons are fed but not scored: the onset itself was scored by the caller, and the
    velocity choice comes after."""
    if t >= horizon:
        return 0.0
    for p in pitches:
        lp, state = net.step(tk.NOTE_ON + p, state)
    offs = sorted((off, p) for p, off in held.items()
                  if p not in released and p not in pitches and t < off <= horizon)
    total = 0.0
    cur = t
    for off, p in offs:
        path = _shift_path(off - cur) + [tk.NOTE_OFF + p]
        gain, lp, state = net.run(lp, state, path)
        total += gain
        cur = off
    if cur < horizon:  # the next event comes at or after the horizon
        total += float(np.logaddexp.reduce(lp[tk.TIME_SHIFT + horizon - cur - 1:tk.VELOCITY]))
    return total


def _assemble(score: Score, groups: list[_Group], shift_steps: list[int],
              pedal_at: list[tuple[int, int, bool]], pedal_step: list[int],
              note_bin: list[int]) -> tuple[Score, int]:
    """The performed score: every input note, shifted with its group, its velocity the
    middle of its chosen bin, its duration kept unless that would now overlap the next
    strike of its key. Returns it and the number of notes shortened."""
    notes = score.notes
    delta_us = [0] * len(notes)
    for g, grp in enumerate(groups):
        for i in grp.notes:
            delta_us[i] = shift_steps[g] * tk.STEP_US
    on = [max(0, n.onset_us + delta_us[i]) for i, n in enumerate(notes)]
    dur = [n.duration_us for n in notes]
    trimmed = 0
    by_pitch: dict[int, list[int]] = {}
    for i, n in enumerate(notes):
        by_pitch.setdefault(n.pitch, []).append(i)
    for idx in by_pitch.values():
        for a, b in zip(idx, idx[1:], strict=False):
            if notes[a].end_us <= notes[b].onset_us and on[a] + dur[a] > on[b]:
                dur[a] = max(1, on[b] - on[a])
                trimmed += 1
    out = [Note(n.pitch, on[i], dur[i], tk.bin_to_velocity(note_bin[i]), n.channel, n.track)
           for i, n in enumerate(notes)]
    pedal: list[PedalEvent] = []
    last = 0
    for j, p in enumerate(score.pedal):
        t_us = max(last, p.t_us + (pedal_step[j] - pedal_at[j][1]) * tk.STEP_US, 0)
        last = t_us
        pedal.append(PedalEvent(t_us, p.value, p.channel))
    return Score(notes=out, pedal=pedal, ticks_per_beat=score.ticks_per_beat, source=score.source), trimmed


def perform_from_file(score: Score, model_path: str | Path,
                      options: ModelRenderOptions | None = None) -> ModelRendering:
    """Load a checkpoint (ModelError for a missing, corrupt or mismatched file) and render."""
    from .checkpoint import load_model

    model, config, _ = load_model(model_path)
    if config.vocab_size != tk.VOCAB_SIZE:
        raise ModelError(f"{model_path}: model vocabulary {config.vocab_size} events, "
                         f"this tokenizer has {tk.VOCAB_SIZE} ({tk.TOKENIZER_VERSION})")
    return perform_with_model(score, model, options)
