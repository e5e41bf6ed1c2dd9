"""MIDI inputs for live (ports, virtual ports, a file replayed) and the CLI commands."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import mido
import pytest

from robo_player.cli import main
from robo_player.live import inputs
from robo_player.live.inputs import FileInput, MidiPortError, list_inputs, open_input

PIECE = Path(__file__).resolve().parents[1] / "robo_player" / "data" / "pieces" / "bwv66.6.mid"
HAS_SEQ = os.path.exists(inputs.ALSA_SEQ)
HAS_RTMIDI = importlib.util.find_spec("rtmidi") is not None


class FakeBackend:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.opened: list[tuple[str, bool]] = []

    def get_input_names(self) -> list[str]:
        return self.names

    def open_input(self, name: str, virtual: bool = False, callback: Any = None) -> Any:
        self.opened.append((name, virtual))
        port = mido.ports.BaseInput()
        port.callback = callback  # a real port calls it from its own thread
        return port


def test_unknown_port_name_lists_the_available_ones() -> None:
    b = FakeBackend(["Keystation 49:0 20:0", "Midi Through:0 14:0"])
    with pytest.raises(
        MidiPortError, match=r"'Nope'.*available: 'Keystation 49:0 20:0', 'Midi Through"
    ):
        open_input("Nope", backend=b)
    open_input("Keystation", backend=b)  # a unique prefix is enough
    assert b.opened == [("Keystation 49:0 20:0", False)]
    open_input(None, virtual=True, backend=b)
    assert b.opened[-1] == ("robo-player", True)


def test_no_ports_at_all_says_what_to_do() -> None:
    with pytest.raises(MidiPortError, match="--virtual"):
        open_input(None, backend=FakeBackend([]))


def test_windows_has_no_virtual_ports_and_is_told_to_use_a_loopback_driver() -> None:
    with pytest.raises(MidiPortError, match="loopMIDI"):
        open_input("robo-player", virtual=True, backend=FakeBackend([]), platform="win32")


def test_a_missing_alsa_sequencer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs.sys, "platform", "linux")
    monkeypatch.setattr(inputs.os.path, "exists", lambda p: p != inputs.ALSA_SEQ)
    with pytest.raises(MidiPortError, match=r"/dev/snd/seq does not exist.*--device /dev/snd"):
        list_inputs()


def test_ports_command_without_a_sequencer_exits_2_naming_it(capsys: Any) -> None:
    if HAS_SEQ:
        pytest.skip("this machine has ALSA's sequencer")
    assert main(["ports"]) == 2
    assert "/dev/snd/seq" in capsys.readouterr().err


@pytest.mark.skipif(
    not (HAS_SEQ and HAS_RTMIDI), reason="no ALSA sequencer (/dev/snd/seq) or no python-rtmidi here"
)
def test_a_real_virtual_port_plays_through_the_live_path() -> None:  # pragma: no cover - ALSA
    """A real rtmidi virtual port (what a DAW plays), its messages through the live loop
    into the simulator: heard, and the host latency measured from rtmidi's callback."""
    import threading
    import time

    from robo_player.driver.ports import open_port
    from robo_player.live import LatencyMode, LiveOptions, LivePlanner
    from robo_player.live.session import run_realtime
    from robo_player.spec import load_spec

    spec = load_spec("piano-61-diy")
    port = open_input("robo-player-test", virtual=True)

    def send() -> None:
        time.sleep(0.2)
        # ALSA lists it as "<client>:robo-player-test <client>:<port>"
        name = next(n for n in mido.get_output_names() if "robo-player-test" in n)
        with mido.open_output(name) as out:
            out.send(mido.Message("note_on", note=60, velocity=100))
            time.sleep(0.2)
            out.send(mido.Message("note_off", note=60))

    sender = threading.Thread(target=send)
    planner = LivePlanner(spec, None, LiveOptions(mode=LatencyMode.LOWEST))
    t_end = time.monotonic() + 1.5
    sender.start()
    with open_port("sim://", spec, truth_seed=0) as dev:
        perf, session = run_realtime(dev, planner, port, until=lambda s: time.monotonic() > t_end)
        assert dev.energised() == []
    sender.join()
    assert planner.stats.outcomes == {"on_time": 1} and planner.stats.note_offs == 1
    assert [h.pitch for h in perf.heard] == [60]
    assert len(session.host_us) == 1 and session.stop_reason == ""


def test_a_file_replays_in_real_time_as_a_port() -> None:
    now = [0.0]
    src = open_input(f"file:{PIECE}")
    assert isinstance(src, FileInput)
    src = FileInput(PIECE, clock=lambda: now[0])
    first_t = src.events[0][0]
    assert src.poll() is (src.events[0][1] if first_t <= 0 else None)
    got = 1 if first_t <= 0 else 0
    while not src.done:
        now[0] += 0.01
        while (m := src.poll()) is not None:
            t_ev, m_ev = src.events[got]
            assert m is m_ev and t_ev <= now[0]  # in order, never before its time
            got += 1
    assert got == len(src.events)
    assert now[0] >= src.events[-1][0]


def test_live_replays_a_file_on_the_simulator_in_virtual_time(tmp_path: Path, capsys: Any) -> None:
    rep = tmp_path / "live.json"
    rc = main([
        "live", "--spec", "piano-61-diy", "--midi-in", f"file:{PIECE}", "--virtual-time",
        "--seconds", "6", "--min-velocity", "64", "--report", str(rep),
    ])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "D = " in out and "velocity >= 64" in out
    doc = json.loads(rep.read_text())
    n_on = sum(
        1 for t, m in inputs.file_events(PIECE) if t <= 6 and m.type == "note_on" and m.velocity
    )
    live = doc["live"]
    assert live["notes_in"] == n_on > 10
    assert sum(live["outcomes"].values()) == n_on  # every note accounted for
    assert live["latency_mode"] == "fixed" and live["latency_ms"] > 0
    assert live["notes_sounded"] + live["notes_dropped"] + live["merged"] == n_on
    assert set(live["host_latency_ms"]) == {"p50", "p99", "max"}
    # heard onset - message - D: the simulator's microphone against the nominal curves
    assert live["onset_deviation_ms"]["p50"] >= 0
    # the file report's own keys, for the player's notes (intended: arrival + D)
    assert doc["notes_in"] == n_on
    assert doc["notes_played"] + doc["notes_altered"] + doc["notes_dropped"] == n_on
    assert doc["notes_altered"] == live["late"]
    # the file report's matcher and the live one measure the same |heard - arrival - D|
    assert doc["onset_error_ms"]["n"] > 10
    assert abs(doc["onset_error_ms"]["p50"] - live["onset_deviation_ms"]["p50"]) < 1.0
    assert {"velocity_error", "notes_unheard", "coil_failures", "plan"} <= set(doc)


def test_live_usage_errors(capsys: Any) -> None:
    assert main(["live", "--spec", "piano-61-diy"]) == 2
    assert "--midi-in" in capsys.readouterr().err
    assert main(["live", "--midi-in", "file:x.mid", "--virtual-time", "--port", "fw-host://"]) == 2
    assert "--virtual-time" in capsys.readouterr().err
    assert main(["live", "--midi-in", "file:/nonexistent.mid", "--virtual-time"]) == 2
    assert "/nonexistent.mid" in capsys.readouterr().err


def test_record_keeps_what_arrived_and_what_was_played_on_two_tracks(tmp_path: Path) -> None:
    rec = tmp_path / "rec.mid"
    rc = main([
        "-q", "live", "--spec", "piano-61-diy", "--midi-in", f"file:{PIECE}", "--virtual-time",
        "--seconds", "4", "--latency", "fixed", "--latency-ms", "300", "--record", str(rec),
    ])  # fmt: skip
    assert rc == 0
    mf = mido.MidiFile(str(rec))
    names = [next(m.name for m in tr if m.type == "track_name") for tr in mf.tracks[1:]]
    assert names == ["arrived", "played"]

    def onsets(tr: Any) -> list[tuple[float, int]]:
        t, out = 0, []
        for m in tr:
            t += m.time
            if m.type == "note_on" and m.velocity:
                out.append((t / 10_000, m.note))  # 10000 ticks per 1 s beat
        return out

    arrived, played = onsets(mf.tracks[1]), onsets(mf.tracks[2])
    n_in = sum(
        1 for t, m in inputs.file_events(PIECE) if t <= 4 and m.type == "note_on" and m.velocity
    )
    assert len(arrived) == n_in and 0 < len(played) <= n_in
    # fixed mode: each played note sounds 300 ms after a note-on of that pitch arrived
    for t, p in played:
        assert any(abs(t - a - 0.3) < 0.002 for a, q in arrived if q == p)
