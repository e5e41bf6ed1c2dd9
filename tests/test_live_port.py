"""The live path driven through a mido input port object in process (no ALSA): raw
bytes go into the port's own parser, the live loop polls the port. Bad input never
crashes it, is limited and reported, and nothing stays on."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import mido
import pytest

from robo_player.driver.ports import open_port
from robo_player.live import LiveOptions, LivePlanner
from robo_player.live.inputs import FileInput, PortInput, open_input
from robo_player.live.measure import live_report
from robo_player.live.session import run_realtime
from robo_player.planner.constraints import PlanOptions
from robo_player.spec import load_spec
from robo_player.spec.model import PianoSpec

PIECE = Path(__file__).resolve().parents[1] / "robo_player" / "data" / "pieces" / "bwv66.6.mid"


@pytest.fixture(scope="module")
def spec() -> PianoSpec:
    return load_spec("piano-61-diy")


class FakeClock:
    """Moves 0.2 ms each time it is read (no wall clock in tests)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.0002
        return self.t


class BytesPort(mido.ports.BaseInput):
    """A mido input port whose wire is a list of (time s, raw bytes) on a fake clock:
    the bytes go through mido's own parser when their time comes."""

    def __init__(self, clock: FakeClock, wire: list[tuple[float, list[int]]]) -> None:
        super().__init__("bytes")
        self.clock, self.wire = clock, sorted(wire, key=lambda w: w[0])

    def _receive(self, block: bool = True) -> Any:
        while self.wire and self.wire[0][0] <= self.clock.t:
            self._parser.feed(self.wire.pop(0)[1])
        return None


def run(spec: PianoSpec, wire: list[tuple[float, list[int]]], until_s: float, port: str = "sim://",
        **opts: Any) -> tuple[Any, Any, LivePlanner, Any]:  # fmt: skip
    clock = FakeClock()
    src = BytesPort(clock, wire)
    planner = LivePlanner(spec, None, LiveOptions(min_velocity=40, **opts))
    with open_port(port, spec, truth_seed=0) as dev:
        perf, session = run_realtime(
            dev, planner, src, clock=clock, idle_s=0.0, until=lambda s: clock.t > until_s
        )
        assert dev.energised() == []  # nothing stays on
    return perf, session, planner, src


def test_a_port_plays_notes_from_raw_bytes(spec: PianoSpec) -> None:
    wire = [(0.1 + 0.2 * i, [0x90, 60 + i, 100]) for i in range(4)]
    wire += [(0.25 + 0.2 * i, [0x80, 60 + i, 0]) for i in range(4)]
    perf, session, planner, src = run(spec, wire, 1.5)
    assert src.closed
    assert planner.stats.outcomes == {"on_time": 4}
    assert sorted(h.pitch for h in perf.heard) == [60, 61, 62, 63]
    rep = live_report(perf, session, planner)
    assert rep["notes_in"] == rep["notes_sounded"] == 4 and rep["host_latency_ms"] is not None


@pytest.mark.parametrize("policy", ["drop", "transpose"])
def test_stray_bytes_sysex_and_odd_notes_never_crash_and_are_reported(
    spec: PianoSpec, policy: str
) -> None:
    wire = [
        (0.05, [0x40, 0x41, 0x42]),  # data bytes with no status: the parser drops them
        (0.06, [0xF0, 0x7E, 0x01, 0x02, 0xF7]),  # SysEx
        (0.07, [0x90, 60]),  # a truncated note-on ...
        (0.08, [0xF8, 0xFE]),  # ... then clock and active sensing
        (0.09, [0x90, 5, 100, 0x90, 127, 100]),  # notes outside the range
        (0.10, [0x80, 70, 0]),  # a note-off without its note-on
        (0.11, [0xB0, 7, 100]),  # a controller the piano has no use for
        (0.12, [0x90, 64, 90]),  # a note that is never released
        (0.13, [0xE0, 0, 64, 0xC0, 5]),  # pitch bend, program change
    ]
    perf, session, planner, _ = run(spec, wire, 1.0, plan=PlanOptions(out_of_range=policy))
    st = planner.stats
    assert st.accounted() and st.notes_in == 3
    outside = 2 if policy == "drop" else 0  # transpose: moved by octaves into the range
    assert st.outcomes["dropped_out_of_range"] == outside
    assert st.outcomes["on_time"] == 3 - outside
    assert st.offs_unmatched == 1
    assert st.ignored["sysex"] == 1 and st.ignored["control_change 7"] == 1
    assert st.ignored["pitchwheel"] == 1 and st.ignored["program_change"] == 1
    assert len(perf.heard) == 3 - outside
    (h,) = [h for h in perf.heard if h.pitch == 64]  # never released: let go at the stop
    assert h.end_us is not None
    rep = live_report(perf, session, planner)
    assert rep["notes_dropped"] == outside and rep["ignored"]["sysex"] == 1


@pytest.mark.parametrize("port", ["sim://", "vmcu://"])
def test_a_flood_of_1000_notes_in_10_ms_is_limited_and_reported(spec: PianoSpec, port: str) -> None:
    raw: list[int] = []
    for i in range(1000):
        raw += [0x90, 36 + (i * 7) % 61, 1 + i % 127]
    # 1000 note-ons in 10 ms (100 each ms), none released
    wire = [(0.1 + k * 0.001, raw[k * 300 : (k + 1) * 300]) for k in range(10)]
    perf, session, planner, _ = run(spec, wire, 0.6, port=port)
    st = planner.stats
    assert st.notes_in == 1000 and st.accounted()
    kept = 1000 - st.outcomes["dropped_rate"]
    assert 64 <= kept <= 64 + 12  # the burst plus 1000 notes/s
    rep = live_report(perf, session, planner)
    assert rep["notes_dropped"] >= st.outcomes["dropped_rate"] > 900
    assert perf.coil_failures == []


def test_a_port_callback_wakes_the_waiting_loop_and_stamps_the_arrival() -> None:
    got: list[Any] = []

    def opener(callback: Any) -> Any:
        got.append(callback)
        return mido.ports.BaseInput("cb")

    src = PortInput(opener)
    assert src.poll() is None and src.wait(0.0) is False
    msg = mido.Message("note_on", note=60, velocity=90)
    th = threading.Thread(target=got[0], args=(msg,))
    th.start()
    assert src.wait(30.0) is True  # woken by the message, not by the timeout
    th.join()
    assert src.poll() is msg and src.arrived_at is not None
    assert src.poll() is None
    src.close()
    with pytest.raises(OSError, match="closed"):
        src.poll()  # a port that went away is a lost input (the loop stops, all off)


def test_open_input_opens_ports_with_a_callback() -> None:
    class Backend:
        def get_input_names(self) -> list[str]:
            return ["Keys:0"]

        def open_input(self, name: str, virtual: bool = False, callback: Any = None) -> Any:
            assert callable(callback)
            return mido.ports.BaseInput(name)

    src = open_input("Keys", backend=Backend())
    assert isinstance(src, PortInput) and src.name == "Keys:0"


def test_replay_in_real_time_records_both_tracks_with_real_timing(
    spec: PianoSpec, tmp_path: Path
) -> None:
    """``--replay``: the file fed through the real-time loop as a player would (here on
    a fake clock); ``--record`` keeps each message at the time it arrived and each note
    at the time it was played."""
    from robo_player.live.record import write_record

    clock = FakeClock()
    src = FileInput(PIECE, clock=clock)
    planner = LivePlanner(spec, None, LiveOptions(min_velocity=40))
    with open_port("sim://", spec, truth_seed=0) as dev:
        perf, session = run_realtime(
            dev, planner, src, clock=clock, idle_s=0.0, until=lambda s: clock.t > 2.5, record=True
        )
        assert dev.energised() == []
    rec = tmp_path / "rec.mid"
    write_record(rec, session, planner)
    mf = mido.MidiFile(str(rec))

    def onsets(tr: Any) -> list[tuple[float, int]]:
        t, out = 0, []
        for m in tr:
            t += m.time
            if m.type == "note_on" and m.velocity:
                out.append((t / 10_000, m.note))  # 10000 ticks per 1 s beat
        return out

    arrived, played = onsets(mf.tracks[1]), onsets(mf.tracks[2])
    due = [(t, m.note) for t, m in src.events if m.type == "note_on" and m.velocity and t < 2.4]
    assert len(arrived) >= len(due) > 5
    # arrived: at the file's times (the loop's start and poll step aside: a few ms)
    offset = arrived[0][0] - due[0][0]
    assert 0 <= offset < 0.01
    for (ta, pa), (td, pd) in zip(arrived, due, strict=False):
        assert pa == pd and abs(ta - td - offset) < 0.003
    # played: each note D after its arrival (fixed mode), as the planner planned it
    d = planner.latency_us / 1e6
    for t, p in played:
        assert any(abs(t - a - d) < 0.0005 for a, q in arrived if q == p)


def test_replay_option_is_a_file_input(capsys: Any) -> None:
    from robo_player.cli import main

    assert main(["-q", "live", "--spec", "piano-61-diy", "--replay", str(PIECE),
                 "--virtual-time", "--seconds", "1"]) == 0  # fmt: skip
    assert main(["live", "--replay", str(PIECE), "--midi-in", "x"]) == 2  # one source only
    assert "not allowed with" in capsys.readouterr().err
