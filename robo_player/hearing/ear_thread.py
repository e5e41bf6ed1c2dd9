"""The live ear's work in a thread of its own (issue 11 §4; docs/hearing.md "The ear in
its own thread").

On a port that plays on the wall clock (``fw-host://``, a real board with ``--mic``) the
stream does not wait for the host: a detector batch that holds up the closed loop's
thread (0.1-1.3 s of wall time on a loaded machine) is time in which nothing is
submitted, and strikes go late. A real rig has the same problem. So there the loop only
hands the ear what it needs (the notes it sends, the blocks of audio as they come) and
takes what has been heard so far; :class:`EarWorker` feeds the blocks and runs the
detector in its own thread, behind the loop by however long its work takes.

It makes the same calls on the ear, in the same order, as the loop's thread would have
made (one :meth:`~.live_audio.LiveAudioEar.heard` after each step's blocks, never
coalesced): so it hears exactly the notes the in-thread ear hears, only later (held
by tests/test_live_audio.py on a recorded block stream), unless it has fallen behind:
:meth:`EarWorker.behind_s` past ``live_audio.HURRY_S``, the ear decides with a quick
detector (no step fits) until it catches up. A thread, not a process: the
detector's time is in numpy calls (FFTs, matrix products) of a few ms each, between
which the loop's thread gets the GIL: with the detector beside it at load 14-16 on 2
cores the loop came at most 56-115 ms behind its steps, against 2.2-2.8 s with the
detector in the loop's thread (``bench/bench_ear_thread.py``, docs/hearing.md).

Bounded: the audio waiting for the ear is held to ``max_behind_s``; past it, new blocks
are dropped (counted, ``dropped_s``) and the ear is fed silence in their place, so its
sample clock stays right and the notes in the gap go unheard: an ear that far behind
hears too late to follow the coils (their heat moves over ~30 s), and a queue that grew
without bound would only hide that. The notes sent are never dropped.

Shutdown on every exit path: the thread is a daemon (it never keeps the process alive);
:meth:`close` (the loop calls it in a ``finally``: an exception, Ctrl-C, a lost link)
stops it and joins it; an exception in the thread is raised again in the loop's thread
at its next call, never hidden.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ..performance import HeardNote

log = logging.getLogger(__name__)

MAX_BEHIND_S = 10.0  # audio waiting for the ear beyond this is dropped (silence fed in its place)
JOIN_S = 5.0  # close() waits this long for a detector batch to end (the thread is a daemon anyway)


def lag_summary(lags_s: list[float]) -> dict[str, float]:
    """The ear's lag (ms): how long after a step's audio arrived the ear had heard it."""
    if not lags_s:
        return {"p95_ms": 0.0, "max_ms": 0.0}
    a = np.asarray(lags_s) * 1e3
    return {"p95_ms": round(float(np.percentile(a, 95)), 1), "max_ms": round(float(a.max()), 1)}


class EarWorker:
    """Runs ``expect(key, t_us, pitch, velocity)``, ``feed(samples, stamp_us)`` and
    ``hear(final) -> [HeardNote]`` (the live ear's, :class:`~.live_audio.AudioEar`) in a
    thread of its own, in the order they were handed in (the module doc).

    ``sample_rate``: the blocks' (for the bound on the audio waiting); ``name``: the
    thread's name (and the errors')."""

    def __init__(self, expect: Callable[[int, float, int, float], None],
                 feed: Callable[[np.ndarray, float | None], None], hear: Callable[[bool], list[HeardNote]],
                 sample_rate: int, *, max_behind_s: float = MAX_BEHIND_S, name: str = "live ear") -> None:
        self._expect, self._feed, self._hear = expect, feed, hear
        self.sr = int(sample_rate)
        self.max_behind = int(max_behind_s * self.sr)  # samples
        self.name = name
        self._cv = threading.Condition()
        # ("expect", args) | ("blocks", [(samples, stamp)], wall time handed in, final, samples dropped)
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._waiting = 0  # samples handed in, not fed yet
        self._steps_in = 0  # steps handed in
        self._steps_done = 0  # ... and heard
        self._unheard: deque[float] = deque()  # wall times the steps not heard yet were handed in
        self._heard: list[HeardNote] = []  # what the ear has heard so far (its last step's)
        self._error: BaseException | None = None
        self._stop = False
        self.lags_s: list[float] = []  # per step: heard this long after it was handed in
        self.max_waiting_s = 0.0  # the most audio that waited for the ear
        self.dropped = 0  # samples dropped (the ear too far behind)
        self._thread = threading.Thread(target=self._run, name=f"robo-player ear: {name}", daemon=True)
        self._thread.start()

    # -- the loop's side (never waits for the ear, but in :meth:`finish`) ---------------------
    def expect(self, key: int, t_us: float, pitch: int, velocity: float) -> None:
        self._put(("expect", (key, t_us, pitch, velocity)))

    def step(self, blocks: list[tuple[np.ndarray, float | None]], final: bool = False) -> list[HeardNote]:
        """Hand in one step's blocks; what the ear has heard so far (at once)."""
        n = sum(len(b) for b, _ in blocks)
        gap = 0
        with self._cv:
            self._raise()
            if self._waiting + n > self.max_behind and not final:
                # too far behind: this audio is dropped, silence fed in its place (the
                # ear's sample clock stays right; silence takes no room while it waits)
                blocks, gap = [], n
                self.dropped += n
            else:
                self._waiting += n
            self.max_waiting_s = max(self.max_waiting_s, self._waiting / self.sr)
            self._steps_in += 1
            t_in = time.perf_counter()
            self._unheard.append(t_in)
            self._inbox.append(("blocks", blocks, t_in, final, gap))
            self._cv.notify()
            return list(self._heard)

    def finish(self, blocks: list[tuple[np.ndarray, float | None]]) -> list[HeardNote]:
        """The stream is over: hand in its last blocks and wait until the ear has heard
        everything (the final step: notes still held for the take's level reported)."""
        self.step(blocks, final=True)
        with self._cv:
            while self._steps_done < self._steps_in and self._error is None:
                if not self._thread.is_alive():
                    raise RuntimeError(f"{self.name}: the ear's thread ended with work left")
                self._cv.wait(0.5)
            self._raise()
            return list(self._heard)

    def close(self) -> None:
        """Stop the thread (its current detector batch ends first, up to ``JOIN_S``)."""
        with self._cv:
            self._stop = True
            self._inbox.clear()
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_S)
            if self._thread.is_alive():
                log.warning("%s: the ear's thread is still in a detector batch after %.0f s; left to end "
                            "(a daemon: it does not keep the process alive)", self.name, JOIN_S)

    def behind_s(self) -> float:
        """How far behind the ear is now (s): since the oldest step it has not heard yet
        was handed in (0 when it has heard them all)."""
        with self._cv:
            return time.perf_counter() - self._unheard[0] if self._unheard else 0.0

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _put(self, item: tuple[Any, ...]) -> None:
        with self._cv:
            self._raise()
            self._inbox.append(item)
            self._cv.notify()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    # -- the ear's thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cv:
                    while not self._inbox and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
                    item = self._inbox.popleft()
                if item[0] == "expect":
                    self._expect(*item[1])
                    continue
                _, blocks, t_in, final, gap = item
                if gap:
                    self._feed(np.zeros(gap, dtype=np.float32), None)
                for b, stamp in blocks:
                    self._feed(b, stamp)
                heard = self._hear(final)
                with self._cv:
                    self._waiting -= sum(len(b) for b, _ in blocks)
                    self._heard = heard
                    self._steps_done += 1
                    self._unheard.popleft()
                    self.lags_s.append(time.perf_counter() - t_in)
                    self._cv.notify_all()
        except BaseException as err:  # noqa: BLE001 (handed to the loop's thread, raised there)
            with self._cv:
                self._error = err
                self._cv.notify_all()

    def stats(self) -> dict[str, Any]:
        return {"threaded": True, "lag": lag_summary(self.lags_s), "max_waiting_s": round(self.max_waiting_s, 3),
                "dropped_s": round(self.dropped / self.sr, 3)}


__all__ = ["MAX_BEHIND_S", "EarWorker", "lag_summary"]
