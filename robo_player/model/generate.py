"""Sampling with hardware-aware constrained decoding.

At every step the next-event logits are masked so that the performance stays playable
on the given spec and well formed:

- **grammar**: a NOTE_OFF only for a key that is down, no NOTE_ON for a key already
  down, no two VELOCITY events in a row, and every key released at the end (no stuck
  notes);
- **length**: no note is held longer than ``max_note_s`` (:data:`MAX_NOTE_S`, 5 s, as
  Magenta's Performance RNN decoder; 99.9 % of the notes in ASAP's training performances
  are under 4.3 s): a time shift may not carry a held key past it, and a key that reaches
  it is released there (a forced NOTE_OFF, fed to the model like any sampled event). An
  under-trained model "forgets" keys it pressed; without the bound they stayed down until
  the hardware's maximum on-time (20 s) or the end;
- **hardware**: the planner's own :class:`~robo_player.planner.constraints.Playability`
  is the oracle. A NOTE_ON must pass ``can_strike`` (key range, velocity the key can
  play, the power budget of overlapping strikes, the minimum repeat interval, coil
  heat); a NOTE_OFF must come after the strike pulse (``min_hold_end``); a TIME_SHIFT
  may not carry a held key past ``max_hold_end`` (max on-time, coil heat); pedal events
  only where the spec has a pedal actuator.

The cheap masks are computed every step; the per-key oracle is asked lazily: a sampled
NOTE_ON that the oracle refuses is taken out and the event drawn again, until one passes
(:func:`_sample_checked`). At top-p 1 that is exactly a draw from the fully masked
distribution (conditioning on the allowed set, one refused key at a time); with top-p < 1
the nucleus is taken over the tokens not yet refused, an approximation (as was the full
mask after a cheap-mask draw, before session 6). Either way every note played passed the
oracle, so a masked performance plans with zero alterations and zero drops.

LSTM models decode with a numpy copy of their weights (:class:`NumpyLSTM`): at batch 1
the per-op overhead of torch dominates, and numpy is several times faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..pitch import note_to_pitch, pitch_to_note
from ..score import Score
from ..spec.model import PianoSpec
from . import tokenizer as tk

log = logging.getLogger(__name__)

V = tk.VOCAB_SIZE
MAX_SECONDS = 3600.0  # one hour of music: `generate --seconds inf` is refused, not run forever
MAX_NOTE_S = 5.0  # longest note a generation holds (Magenta's MAX_NOTE_DURATION_SECONDS)
# Nucleus mass of `generate`, `play --generate`, eval-model's and bench_model's samples (one
# default, so what is measured is what a user gets). 1: the model's own distribution. Top-p
# < 1 cuts the tail of every step's distribution, rare long time shifts included: with the
# ASAP-trained LSTM, 0.95 made samples 40 % denser than the performances and halved the pedal
# (docs/model.md, "Samples and top-p").
DEFAULT_TOP_P = 1.0
BOS = tk.BOS


# ---------------------------------------------------------------- the mask


class HardwareMask:
    """Decoding state + masks for one performance on one spec (see the module docstring)."""

    def __init__(self, spec: PianoSpec | None, calibration: Any = None,
                 max_note_s: float | None = MAX_NOTE_S) -> None:
        if max_note_s is not None and not 0.05 <= max_note_s <= MAX_SECONDS:
            raise ModelError(f"max_note_s {max_note_s}: must be in [0.05, {MAX_SECONDS}] seconds or None")
        self.spec = spec
        self.max_note_steps = None if max_note_s is None else int(round(max_note_s * 1e6 / tk.STEP_US))
        self.now = 0  # steps of 10 ms
        self.vbin = tk.DEFAULT_VELOCITY_BIN
        self.prev = -1
        self.pedal_down = False
        self.held: dict[int, tuple[int, int]] = {}  # pitch -> (min_end_step, max_end_step)
        self.play = None
        base = np.ones(V, dtype=bool)
        base[tk.NOTE_OFF:tk.TIME_SHIFT] = False  # note-offs: only for held keys
        if spec is not None:
            from ..planner import playability

            self.play = playability(spec, calibration)  # the spec family's oracle
            on = np.zeros(128, dtype=bool)
            on[spec.lowest:spec.highest + 1] = True
            base[tk.NOTE_ON:tk.NOTE_OFF] = on
            vel_ok = np.zeros(tk.N_VEL, dtype=bool)
            for b in range(tk.N_VEL):
                v = tk.bin_to_velocity(b)
                vel_ok[b] = any(not self.play.drive(k.pitch, v).altered for k in spec.keys)
            if not vel_ok.any():
                raise ModelError(f"spec {spec.name}: no velocity bin plays unaltered on any key")
            base[tk.VELOCITY:tk.PEDAL_ON] = vel_ok
            if spec.pedal is None:
                base[tk.PEDAL_ON] = base[tk.PEDAL_OFF] = False
        self.base = base
        self.oracle_calls = 0

    @property
    def now_us(self) -> int:
        return self.now * tk.STEP_US

    @property
    def velocity(self) -> int:
        return tk.bin_to_velocity(self.vbin)

    def cheap_mask(self) -> np.ndarray:
        """Allowed tokens without asking the per-key oracle about note-ons."""
        m = self.base.copy()
        for p, (lo, _hi) in self.held.items():
            m[tk.NOTE_ON + p] = False
            m[tk.NOTE_OFF + p] = self.now >= lo
        self.limit_shifts(m)
        if tk.VELOCITY <= self.prev < tk.PEDAL_ON:
            m[tk.VELOCITY:tk.PEDAL_ON] = False
        if self.pedal_down:
            m[tk.PEDAL_ON] = False
        else:
            m[tk.PEDAL_OFF] = False
        return m

    def limit_shifts(self, m: np.ndarray) -> None:
        """No time shift may carry a held key past its latest end (hardware on-time, note
        length bound)."""
        if self.held:
            room = min(hi for _, hi in self.held.values()) - self.now
            if room < tk.N_SHIFT:
                m[tk.TIME_SHIFT + max(room, 0):tk.VELOCITY] = False

    def bound_notes(self, max_note_s: float | None) -> None:
        """From now on no note is held longer than ``max_note_s`` (keys already down: from now)."""
        self.max_note_steps = None if max_note_s is None else int(round(max_note_s * 1e6 / tk.STEP_US))
        if self.max_note_steps is not None:
            for p, (lo, hi) in self.held.items():
                self.held[p] = (lo, min(hi, max(lo, self.now + self.max_note_steps)))

    def due_release(self) -> int | None:
        """The NOTE_OFF of a key that has reached its latest end (the lowest such key), else None."""
        due = [p for p, (lo, hi) in self.held.items() if hi <= self.now and lo <= self.now]
        return tk.NOTE_OFF + min(due) if due else None

    def note_on_ok(self, pitch: int) -> bool:
        if self.play is None:
            return pitch not in self.held
        self.oracle_calls += 1
        return self.play.can_strike(pitch, self.now_us, self.velocity)

    def why_not(self, tok: int) -> str | None:
        """None if ``tok`` may come next, else a reason in words."""
        if not self.cheap_mask()[tok]:
            if tk.NOTE_ON <= tok < tk.NOTE_OFF and self.spec is not None and not self.spec.has_pitch(tok):
                return (f"{pitch_to_note(tok)} (MIDI {tok}) is outside {self.spec.name}'s range "
                        f"{pitch_to_note(self.spec.lowest)}..{pitch_to_note(self.spec.highest)} "
                        f"({self.spec.lowest}..{self.spec.highest})")
            return f"{tk.token_name(tok)} not allowed here (grammar or hardware limit)"
        if tk.NOTE_ON <= tok < tk.NOTE_OFF and self.play is not None:
            why = self.play.why_not(tok, self.now_us, self.velocity)
            if why:
                return f"{tk.token_name(tok)} at {self.now_us / 1e6:.2f}s: {why}"
        return None

    def apply(self, tok: int) -> None:
        """Advance the state by one (allowed) token."""
        if tk.NOTE_ON <= tok < tk.NOTE_OFF:
            p = tok - tk.NOTE_ON
            if self.play is not None:
                self.play.strike(p, self.now_us, self.velocity)
                lo = -(-self.play.min_hold_end(p) // tk.STEP_US)
                hi = self.play.max_hold_end(p) // tk.STEP_US
            else:
                lo, hi = self.now + 1, 1 << 40
            if self.max_note_steps is not None:
                hi = min(hi, self.now + self.max_note_steps)
            self.held[p] = (max(lo, self.now + 1), hi)
        elif tk.NOTE_OFF <= tok < tk.TIME_SHIFT:
            p = tok - tk.NOTE_OFF
            if self.play is not None:
                self.play.release(p, self.now_us)
            del self.held[p]
        elif tk.TIME_SHIFT <= tok < tk.VELOCITY:
            self.now += tok - tk.TIME_SHIFT + 1
        elif tk.VELOCITY <= tok < tk.PEDAL_ON:
            self.vbin = tok - tk.VELOCITY
        elif tok == tk.PEDAL_ON:
            self.pedal_down = True
        elif tok == tk.PEDAL_OFF:
            self.pedal_down = False
        self.prev = tok

    def closing_tokens(self) -> list[int]:
        """Tokens that end the performance cleanly: wait for every strike pulse, then
        release every key (and the pedal)."""
        out: list[int] = []
        if self.held:
            wait = max(lo for lo, _ in self.held.values()) - self.now
            while wait > 0:
                k = min(wait, tk.N_SHIFT)
                out.append(tk.TIME_SHIFT + k - 1)
                self.apply(out[-1])
                wait -= k
            for p in sorted(self.held):
                out.append(tk.NOTE_OFF + p)
                self.apply(out[-1])
        if self.pedal_down:
            out.append(tk.PEDAL_OFF)
            self.apply(out[-1])
        return out


# ---------------------------------------------------------------- fast stepping


class NumpyLSTM:
    """Batch-1 decoding of a :class:`~robo_player.model.networks.PerformanceLSTM` in numpy.

    The input embedding is folded into the first layer: ``table[tok]`` = ``W_ih0 @ E[tok] +
    b_ih0 + b_hh0`` (V+1, 4H). The gates are reordered to (i, f, o, g) and the sigmoid rows
    pre-scaled by 1/2, so one in-place ``tanh`` over all four gates gives them (sigmoid(z) =
    (1 + tanh(z/2)) / 2). Every matrix a layer's new ``h`` meets is fused into one
    (float32): ``[h_i, 1] @ [W_ih(i+1) | W_hh(i); b(i+1) | 0]`` gives the next layer's input
    share (bias included) and this layer's recurrent share for the next step, and the top
    layer's ``[h, 1] @ [head | W_hh; head bias | 0]`` the logits and its recurrent share:
    one matvec per layer per step, into preallocated scratch for everything but what the
    new state keeps. A features model's
    state projection is folded in too; its share of the gates is kept between steps and
    only recomputed when the state rows change (a note or a time shift).
    """

    def __init__(self, model: Any) -> None:
        import torch

        H = model.lstm.hidden_size  # noqa: N806
        # torch's gate order i, f, g, o -> i, f, o, g; sigmoid rows (i, f, o) scaled by 1/2
        order = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
        scale = np.r_[np.full(3 * H, 0.5), np.ones(H)]

        def gates(w: Any) -> np.ndarray:  # (..., 4H) in torch's order -> ours
            return np.ascontiguousarray((np.asarray(w, np.float64)[..., order] * scale).astype(np.float32))

        with torch.no_grad():
            lstm = model.lstm
            L = lstm.num_layers  # noqa: N806
            E = model.embed.weight.double()  # noqa: N806 - (V+1, C)
            self.layers = L
            self.h = H
            self.n_out = model.head.out_features
            table = (E @ lstm.weight_ih_l0.double().T + lstm.bias_ih_l0.double() + lstm.bias_hh_l0.double())
            w_hh = [gates(getattr(lstm, f"weight_hh_l{i}").double().T.numpy()) for i in range(L)]  # (H, 4H)
            w_ih = [gates(getattr(lstm, f"weight_ih_l{i}").double().T.numpy()) for i in range(1, L)]
            b = [gates((getattr(lstm, f"bias_ih_l{i}") + getattr(lstm, f"bias_hh_l{i}")).double().numpy())
                 for i in range(1, L)]
            head_w = model.head.weight.T.numpy().astype(np.float32)  # (H, V)
            head_b = model.head.bias.numpy().astype(np.float32)
            # fused[i] (H+1, N): what layer i's h feeds (the layer above, or the head), then its
            # own W_hh; the last row, met by a constant 1 after h, is the bias of what it feeds
            self.fused = [np.ascontiguousarray(np.block([
                [w_ih[i] if i < L - 1 else head_w, w_hh[i]],
                [(b[i] if i < L - 1 else head_b)[None], np.zeros((1, 4 * H), np.float32)]]))
                for i in range(L)]
            self.state_w: np.ndarray | None = None
            enc = getattr(model, "state_enc", None)
            if enc is not None:  # fold the state projection into the first layer too
                w_ih0 = lstm.weight_ih_l0.double()
                self.state_w = gates((w_ih0 @ enc.proj.weight.double()).T.numpy())  # (D, 4H)
                table = table + w_ih0 @ enc.proj.bias.double()
                self._enc = type(enc)
            self.table = gates(table.numpy())
        self.features = self.state_w is not None
        self._g = np.empty(4 * H, np.float32)  # scratch: the gates of the layer being stepped
        self._ig = np.empty(H, np.float32)  # scratch: i * g
        self._hid = np.ones(H + 1, np.float32)  # scratch: the layer's new h, then a constant 1
        self._zero = np.zeros(4 * H, np.float32)
        g = self._g  # views of the scratch, made once: sigmoid rows, i, f, o, candidate, h
        self._views = (g[:3 * H], g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:], self._hid[:H])
        self._rec_at = [4 * H if i < self.layers - 1 else self.n_out for i in range(self.layers)]

    def _state_gates(self, tracker: tk.StateTracker, w: np.ndarray) -> np.ndarray:
        """The state rows' share of the first layer's gates: ``StateEncoder.dense`` of
        ``tracker.codes()`` times the folded projection, from the tracker's fields, as one
        weighted sum of rows of ``w`` (held keys 1, their time down in seconds, the histogram
        and the two gap bins 1 each)."""
        enc = self._enc
        top = enc.N_BINS - 1
        cap = 255
        if tracker.last_on < 0:
            since = ioi = cap
        else:
            since = min(tracker.now - tracker.last_on, cap)
            ioi = min(tracker.last_on - tracker.prev_group, cap) if tracker.prev_group >= 0 else cap
        rows = [enc.SINCE + min(top, since // enc.GAP_STEPS), enc.IOI + min(top, ioi // enc.GAP_STEPS)]
        coef = [1.0, 1.0]
        if tracker.onset:  # (plain Python: a handful of keys, where numpy's per-call cost dominates)
            now, el_top, hist = tracker.now, cap - 1, enc.HIST
            keys = list(tracker.onset)
            els = [min(now - t0, el_top) for t0 in tracker.onset.values()]
            rows += keys
            rows += [hist + min(el // enc.EL_STEPS, top) for el in els]
            rows += [tk.N_PITCH + k for k in keys]
            coef += [1.0] * (2 * len(keys))
            coef += [el / 100.0 for el in els]
        return np.dot(np.array(coef, np.float32), w.take(rows, axis=0))

    def step(self, tok: int, state: Any) -> tuple[np.ndarray, Any]:
        """State: per layer (its recurrent share of the next step's gates, ``h @ W_hh``, and
        its cell ``c``), then, when the model reads state features, the event-state tracker
        and its share of the first layer's gates. Arrays in a state are never changed in
        place (a new state has new ones), so a state can be stepped twice."""
        H = self.h  # noqa: N806
        if state is None:
            state = [(self._zero, np.zeros(H, np.float32)) for _ in range(self.layers)]
            if self.features:
                state += [tk.StateTracker(), None]
        g, ig, hid = self._g, self._ig, self._hid
        np.add(self.table[tok], state[0][0], out=g)
        extra: list[Any] = []
        if self.features:
            tracker, sg = state[self.layers], state[self.layers + 1]
            if tok < tk.VELOCITY or sg is None:  # notes and time shifts change the state rows
                if tok < V:
                    tracker.apply(int(tok))
                sg = self._state_gates(tracker, self.state_w)  # type: ignore[arg-type]
            g += sg
            extra = [tracker, sg]
        new: list[Any] = []
        s, gi, gf, go, gg, h = self._views
        out = self._zero
        for i, w in enumerate(self.fused):
            if i:
                np.add(out[:4 * H], state[i][0], out=g)
            np.tanh(g, out=g)
            s *= 0.5
            s += 0.5  # i, f, o: sigmoids; gg: the candidate
            c = np.multiply(gf, state[i][1])
            np.multiply(gi, gg, out=ig)
            c += ig
            np.tanh(c, out=h)
            h *= go
            out = np.dot(hid, w)  # new: its recurrent share goes into the state
            new.append((out[self._rec_at[i]:], c))
        return out[:self.n_out].copy(), new + extra


class TorchStepper:
    """Batch-1 decoding through the model's own ``step`` (the Transformer's KV cache).

    Runs torch on one thread: at batch 1 the ops are too small to split, and on a busy
    2-core machine a second thread made a step 10x slower (48 vs 3.4 ms, measured).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.features = bool(getattr(model.config, "features", False))

    def step(self, tok: int, state: Any) -> tuple[np.ndarray, Any]:
        """State: the model's own, plus the event-state tracker for a features model."""
        import torch

        tracker = None
        codes = None
        if self.features:
            tracker, state = (state if state is not None else (tk.StateTracker(), None))
            if tok < V:
                tracker.apply(int(tok))
            codes = torch.from_numpy(tracker.codes())[None]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                logits, state = self.model.step(torch.tensor([tok]), state, codes)
        finally:
            torch.set_num_threads(threads)
        return logits[0].float().numpy(), ((tracker, state) if self.features else state)


def stepper_for(model: Any) -> NumpyLSTM | TorchStepper:
    return NumpyLSTM(model) if model.config.arch == "lstm" else TorchStepper(model)


# ---------------------------------------------------------------- sampling


def _sample(logits: np.ndarray, mask: np.ndarray, temperature: float, top_p: float,
            rng: np.random.Generator) -> int:
    """One draw from softmax(logits / temperature) over ``mask``, cut to the top-p nucleus."""
    p = np.where(mask, logits, -np.inf)
    top = p.max()
    if not np.isfinite(top):
        raise ModelError("constrained decoding: no event allowed (internal error)")
    p -= top
    if temperature != 1.0:
        p *= 1.0 / max(temperature, 1e-6)
    np.exp(p, out=p)  # 0 where masked
    if top_p < 1.0:
        # the nucleus lies among the tokens over 1e-4 of the top whenever the rest weigh less
        # than 1 - top_p of the total: then only those need sorting (exact, and ~10x fewer)
        cand = (p >= 1e-4).nonzero()[0]
        total = p.sum()
        pc = p[cand]
        order = cand[(-pc).argsort()] if total - pc.sum() < (1.0 - top_p) * total else (-p).argsort()
        cum = p[order].cumsum()
        k = min(int(cum.searchsorted(top_p * total)) + 1, len(order))  # the smallest set with mass >= top_p
        return int(order[min(int(cum[:k].searchsorted(rng.random() * cum[k - 1], side="right")), k - 1)])
    cum = p.cumsum()
    i = int(cum.searchsorted(rng.random() * cum[-1], side="right"))
    return i if i < len(p) else int(p.nonzero()[0][-1])  # (u * total rounded up to total)


def _sample_checked(logits: np.ndarray, mask: np.ndarray, ok: Callable[[int], bool], temperature: float,
                    top_p: float, rng: np.random.Generator) -> int:
    """A draw from ``mask`` (changed in place) whose note-ons must also pass ``ok(pitch)``:
    a refused note-on is taken out and the draw made again (see the module docstring)."""
    while True:
        tok = _sample(logits, mask, temperature, top_p, rng)
        if not tk.NOTE_ON <= tok < tk.NOTE_OFF or ok(tok):
            return tok
        mask[tok] = False


def parse_primer(text: str) -> list[int]:
    """``"C4 E4 G4"`` -> MIDI pitches; ModelError naming a bad name."""
    pitches = []
    for i, word in enumerate(text.split()):
        p = note_to_pitch(word)
        if p is None:
            if word.isdigit() and 0 <= int(word) <= 127:
                p = int(word)
            else:
                raise ModelError(f"--primer: word {i + 1} {word!r} is not a note name like C4, F#3, Bb2")
        pitches.append(p)
    return pitches


def primer_tokens(pitches: list[int], step_ms: int = 250, velocity: int = 72) -> list[int]:
    """One note after the other, ``step_ms`` apart and each ``step_ms`` long."""
    from ..score import Note

    notes = [Note(p, i * step_ms * 1000, step_ms * 1000, velocity) for i, p in enumerate(pitches)]
    return tk.encode(Score(notes=notes))


@dataclass(slots=True)
class Generated:
    tokens: list[int]
    score: Score
    events: int  # sampled events (primer excluded)
    wall_s: float
    oracle_calls: int

    @property
    def realtime_factor(self) -> float:
        return self.score.duration_s / self.wall_s if self.wall_s > 0 else float("inf")


def generate(model: Any, spec: PianoSpec | None, seconds: float, primer: list[int] | None = None,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, constrain: bool = True,
             calibration: Any = None, max_events: int | None = None,
             progress: Callable[[float], None] | None = None,
             max_note_s: float | None = MAX_NOTE_S) -> Generated:
    """Sample a performance of about ``seconds`` (it ends when time passes ``seconds``;
    at most :data:`MAX_SECONDS`). ``progress(fraction)`` is called every 2000 events.

    ``constrain=False`` samples with no hardware mask (to measure what masking buys); the
    decoder still keeps the grammar, the note length bound ``max_note_s`` (None: none) and
    releases every key at the end. The primer is taken as given (its notes may be longer);
    a primer token that the spec cannot play raises ModelError with the reason.
    """
    if not 0 < seconds <= MAX_SECONDS:  # also refuses inf and nan
        raise ModelError(f"--seconds {seconds}: must be a number of seconds in (0, {MAX_SECONDS}]")
    if not temperature > 0:
        raise ModelError(f"--temperature {temperature}: must be > 0")
    if not 0 < top_p <= 1:
        raise ModelError(f"--top-p {top_p}: must be in (0, 1]")
    rng = np.random.default_rng(seed)
    mask = HardwareMask(spec if constrain else None, calibration, max_note_s=None)
    stepper = model if hasattr(model, "step") and not hasattr(model, "config") else stepper_for(model)
    end_step = int(round(seconds * 1e6 / tk.STEP_US))
    max_events = max_events or max(1000, int(seconds * 200))
    t0 = time.perf_counter()
    toks: list[int] = []
    state = None
    logits, state = stepper.step(BOS, state)
    for i, tok in enumerate(primer or []):
        if constrain:
            why = mask.why_not(tok)
            if why:
                raise ModelError(f"primer event {i + 1}: {why}")
        elif tk.NOTE_OFF <= tok < tk.TIME_SHIFT and (tok - tk.NOTE_OFF) not in mask.held:
            continue
        mask.apply(tok)
        toks.append(tok)
        logits, state = stepper.step(tok, state)
    n_primer = len(toks)
    mask.bound_notes(max_note_s)
    while mask.now < end_step and len(toks) - n_primer < max_events:
        due = mask.due_release()
        if due is not None:  # a key at its latest end: released, and the model told so
            tok = due
        else:
            m = mask.cheap_mask() if constrain else _grammar_only(mask)
            tok = (_sample_checked(logits, m, mask.note_on_ok, temperature, top_p, rng) if constrain
                   else _sample(logits, m, temperature, top_p, rng))
        mask.apply(tok)
        toks.append(tok)
        logits, state = stepper.step(tok, state)
        if progress is not None and len(toks) % 2000 == 0:
            progress(min(1.0, mask.now / max(end_step, 1)))
    if progress is not None:
        progress(1.0)
    toks.extend(mask.closing_tokens())
    wall = time.perf_counter() - t0
    score = tk.decode(toks, source="generated")
    return Generated(toks, score, len(toks) - n_primer, wall, mask.oracle_calls)


def _grammar_only(mask: HardwareMask) -> np.ndarray:
    """No hardware mask: everything but orphan note-offs (decode would drop them anyway)
    and time shifts past the note length bound."""
    m = np.ones(V, dtype=bool)
    m[tk.NOTE_OFF:tk.TIME_SHIFT] = False
    for p in mask.held:
        m[tk.NOTE_OFF + p] = True
    mask.limit_shifts(m)
    return m


def generate_from_file(model_path: str | Path, spec: PianoSpec | None, seconds: float,
                       primer: str | None = None, primer_midi: str | Path | None = None,
                       temperature: float = 1.0, top_p: float = DEFAULT_TOP_P, seed: int = 0,
                       constrain: bool = True,
                       progress: Callable[[float], None] | None = None) -> Generated:
    from .checkpoint import load_model

    model, _, _ = load_model(model_path)
    toks: list[int] | None = None
    if primer and primer_midi:
        raise ModelError("give --primer or --primer-midi, not both")
    if primer:
        pitches = parse_primer(primer)
        for i, p in enumerate(pitches):
            if spec is not None and not spec.has_pitch(p):
                raise ModelError(f"--primer: note {i + 1} {pitch_to_note(p)} (MIDI {p}) is outside "
                                 f"{spec.name}'s range {pitch_to_note(spec.lowest)}..{pitch_to_note(spec.highest)} "
                                 f"({spec.lowest}..{spec.highest})")
        toks = primer_tokens(pitches)
    elif primer_midi:
        from ..midi import read_midi

        sc = read_midi(primer_midi)
        for i, n in enumerate(sc.notes):
            if spec is not None and not spec.has_pitch(n.pitch):
                raise ModelError(f"{primer_midi}: note {i + 1} {pitch_to_note(n.pitch)} (MIDI {n.pitch}) at "
                                 f"{n.onset_us / 1e6:.2f}s is outside {spec.name}'s range "
                                 f"{pitch_to_note(spec.lowest)}..{pitch_to_note(spec.highest)}")
        toks = tk.encode(sc)
    return generate(model, spec, seconds, primer=toks, temperature=temperature, top_p=top_p,
                    seed=seed, constrain=constrain, progress=progress)
