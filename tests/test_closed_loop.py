"""Warm coils and the closed loop (issue 11 §4, robo_player/hearing/loop.py)."""

from __future__ import annotations

import numpy as np
import pytest
from driver_helpers import stream_steps
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.calibrator.session import calibrate_session
from robo_player.cli import main
from robo_player.driver import open_port
from robo_player.errors import TransportError
from robo_player.hearing.loop import LoopSettings, corrected_calibration, play_closed_loop
from robo_player.midi import bundled_pieces, read_midi
from robo_player.plan import Command, Op
from robo_player.planner import plan as plan_for
from robo_player.report import match_heard
from robo_player.score import Note, Score
from robo_player.sim.physics import CoilEvent, PianoPhysics
from robo_player.sim.truth import COPPER_TEMPCO_PER_K, Truth
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration

PITCHES = [57, 64, 69, 76]
RATE = LoopSettings().rate  # the loop's default speed


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def _warm_then_strike(spec, tempco: float):  # noqa: ANN001, ANN202
    """A cold strike, then 20 s held at the hold duty (the coil warms), then a strike."""
    a = spec.key(60).channel
    # exact (no spread): the first and last strikes are compared to the µs
    phys = PianoPhysics(spec, Truth.draw(spec, 4), tempco_per_k=tempco, spread=False)
    ev = [
        CoilEvent(0, a, 0.8), CoilEvent(30_000, a, 0.0),  # cold
        CoilEvent(500_000, a, 1.0), CoilEvent(530_000, a, 0.35), CoilEvent(20_500_000, a, 0.0),
        CoilEvent(20_700_000, a, 0.8), CoilEvent(20_730_000, a, 0.0),  # warm
    ]
    perf = phys.run(ev)
    assert len(perf.heard) == 3
    return perf.heard


def test_warm_coil_strikes_later_and_softer(spec) -> None:  # noqa: ANN001
    cold = _warm_then_strike(spec, 0.0)
    warm = _warm_then_strike(spec, COPPER_TEMPCO_PER_K)
    assert warm[0] == cold[0]  # a cold coil plays as before
    assert warm[2].t_us > cold[2].t_us + 200  # the warm strike is later ...
    assert warm[2].velocity < cold[2].velocity - 1.0  # ... and softer
    # without heating, the same strike sounds the same cold or after the hold
    assert cold[2].t_us - 20_700_000 == cold[0].t_us


def test_heating_option(spec) -> None:  # noqa: ANN001
    with pytest.raises(TransportError, match=r"heating=2 \(allowed: 0 or 1\)"):
        open_port("sim://?heating=2", spec)
    with pytest.raises(ValueError, match="tempco_per_k"):
        PianoPhysics(spec, Truth.draw(spec, 0), tempco_per_k=-1.0)


@pytest.fixture(scope="module")
def hot(spec):  # noqa: ANN001, ANN201
    """A calibration of four keys (cold) and a loud, dense piece on them."""
    # calibrated through the note-level sensor: the loop is under test, not the hearing.
    # Exact (spread=0), as _play: the loop corrects drift (warm coils), not a strike's
    # own spread; with it (sim://'s default) the loop's onset p99 on this piece is
    # 1.61 ms against the open loop's 5.61 ms (p99 <= 1 ms missed: the strikes' own
    # spread; test_loop_reduces_error_with_the_spread, docs/simulator.md)
    with open_port("sim://?sensor=notes&spread=0", spec, truth_seed=2) as dev:
        cal, _ = calibrate_session(dev, spec, pitches=PITCHES)
    notes = [Note(PITCHES[i % 4], i * 150_000, 400_000, 120) for i in range(400)]
    plan, rep = plan_for(Score(notes=notes), spec, cal)
    return cal, plan, rep


def _play(spec, hot, rate: float, url: str = "sim://?heating=1&spread=0", **kw):  # noqa: ANN001, ANN202
    _, plan, rep = hot
    pitch = {k.channel: k.pitch for k in spec.keys}
    level = {k.channel: k.pwm_max for k in spec.keys}
    with open_port(url, spec, truth_seed=2) as dev:
        res = play_closed_loop(dev, plan, rep.outcomes, lambda a: pitch.get(a, -1), lambda a: level.get(a, 0),
                               LoopSettings(rate=rate, **kw))  # fmt: skip
    matched = match_heard(rep.outcomes, res.heard)
    played = [o for o in rep.outcomes if o.fate.name == "PLAYED"]
    assert all(o.index in matched for o in played)  # every note heard
    on = np.array([abs(matched[o.index].t_us - o.intended_t_us) for o in played])
    vel = np.array([abs(matched[o.index].velocity - o.velocity_in) for o in played])
    return res, float(np.percentile(on, 99)), float(vel.mean())


def _stream_and_listen(dev, plan, lead_us: int = 250_000, step_us: int = 50_000):  # noqa: ANN001, ANN202
    """Submit ``plan`` ``lead_us`` ahead as the stream runs; listen every ``step_us``.
    Returns [(now, heard so far)] and the drain's performance."""
    seen = [(now, dev.heard_so_far()) for now in stream_steps(dev, plan.commands, 400_000, lead_us, step_us)]
    return seen, dev.drain()


@pytest.mark.parametrize("piece", [1, 2])  # maple_leaf_rag, mazurka06-2
def test_heard_so_far_is_what_the_stream_sounds(spec, piece: int) -> None:  # noqa: ANN001
    """Heard live, note by note, is what the whole stream gives at its drain (warm coils,
    chords, repeats): nothing heard before it sounded plus the sensor's delay, nothing
    heard that the stream does not sound, nothing it sounds left unheard."""
    plan, _ = plan_for(read_midi(bundled_pieces()[piece]), spec, None)
    url = "sim://?heating=1&timing_sd_us=0&loudness_sd=0&heard_delay_ms=80"
    with open_port(url, spec, truth_seed=3) as dev:
        seen, perf = _stream_and_listen(dev, plan)
    final = sorted((h.t_us, h.pitch, h.velocity) for h in perf.heard)
    live = seen[-1][1]
    assert len(final) > 700
    assert sorted((h.t_us, h.pitch, h.velocity) for h in live) == final  # exact sensor: equal
    prev = 0
    for now, heard in seen:  # heard grows, and only with notes 80 ms old
        assert all(h.t_us <= now - 80_000 for h in heard[prev:])
        assert all(h.end_us is None for h in heard)
        prev = len(heard)
    # most notes were heard within one step of onset + delay (none waited long)
    first_seen = {}
    for now, heard in seen:
        for h in heard:
            first_seen.setdefault((h.t_us, h.pitch), now)
    waits = np.array([first_seen[k] - k[0] for k in first_seen])
    assert waits.min() >= 80_000 and np.percentile(waits, 99) <= 80_000 + 50_000


def test_heard_so_far_noise_leaves_the_drain_alone(spec) -> None:  # noqa: ANN001
    """Listening live draws its own sensor noise: the drain reports what it reports without it."""
    plan, _ = plan_for(read_midi(bundled_pieces()[0]), spec, None)
    with open_port("sim://", spec, truth_seed=3, sensor_seed=5) as dev:
        seen, perf = _stream_and_listen(dev, plan)
    with open_port("sim://", spec, truth_seed=3, sensor_seed=5) as dev:
        quiet = dev.play(plan)
    assert perf.heard == quiet.heard
    live = seen[-1][1]
    assert len(live) == len(perf.heard)
    assert any(a.t_us != b.t_us for a, b in zip(sorted(live, key=lambda h: (h.t_us, h.pitch)), perf.heard, strict=True))


def test_heard_delay_option(spec) -> None:  # noqa: ANN001
    with pytest.raises(TransportError, match=r"heard_delay_ms.*allowed: 50..2000"):
        open_port("sim://?heard_delay_ms=10", spec)


class _DeafBoard:
    """A board that plays but hears nothing while it plays (a real serial:// board without
    a microphone: none runs here; every simulated piano port now hears live)."""

    url = "serial:///dev/ttyACM0"

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, commands) -> None:  # noqa: ANN001
        self.submitted += len(commands)

    def advance(self, until_t_us: int) -> None:
        pass

    def heard_so_far(self) -> None:
        return None


def test_loop_refuses_a_device_that_cannot_hear_live(hot) -> None:  # noqa: ANN001
    """A device whose ``heard_so_far`` is None is refused at the first step, with its
    name, rather than played unheard."""
    _, plan, rep = hot
    dev = _DeafBoard()
    with pytest.raises(TransportError, match=r"serial:///dev/ttyACM0: the closed loop needs a device that hears"):
        play_closed_loop(dev, plan, rep.outcomes, lambda a: -1, lambda a: 255)
    assert 0 < dev.submitted < len(plan.commands)  # stopped at its first step


def test_vmcu_hears_what_its_firmware_trace_sounds(spec) -> None:  # noqa: ANN001
    """vmcu:// (the firmware's Python model, virtual time) hears live from its trace so
    far: exactly the drain's notes (exact sensor), none before onset + delay."""
    plan, _ = plan_for(read_midi(bundled_pieces()[0]), spec, None)
    url = "vmcu://?heating=1&timing_sd_us=0&loudness_sd=0&heard_delay_ms=80"
    with open_port(url, spec, truth_seed=3) as dev:
        seen, perf = _stream_and_listen(dev, plan)
    assert perf.extra["commands"] == {"played": len(plan.commands)}
    final = sorted((h.t_us, h.pitch, h.velocity) for h in perf.heard)
    assert len(final) > 100 and sorted((h.t_us, h.pitch, h.velocity) for h in seen[-1][1]) == final
    prev = 0
    for now, heard in seen:
        assert all(h.t_us <= now - 80_000 for h in heard[prev:])
        prev = len(heard)


def test_loop_on_the_firmware_model(spec, hot) -> None:  # noqa: ANN001
    """The closed loop through vmcu:// (the firmware queues and times the commands; the
    physics reads its trace): it beats the open loop there too."""
    _, open_p99, _ = _play(spec, hot, 0.0, url="vmcu://?heating=1&spread=0")  # exact: see ``hot``
    res, p99, _ = _play(spec, hot, RATE, url="vmcu://?heating=1&spread=0")
    assert p99 < open_p99 / 2 and p99 <= 1_000 and res.used > 300


def test_loop_plays_one_stream(spec, hot) -> None:  # noqa: ANN001
    """The whole piece is one stream: every command played, none late; the loop heard
    and used the notes while it ran (not at a drain between segments)."""
    _, plan, rep = hot
    res, _, _ = _play(spec, hot, RATE)
    perf = res.performance
    assert perf is not None and perf.extra["commands"] == {"played": len(plan.commands)}
    assert res.heard_live >= 0.95 * len(rep.outcomes) and res.used >= 0.95 * len(rep.outcomes)
    # corrections were made all along the piece, not at a few segment boundaries
    ts = sorted({c.t_us for c in res.log})
    assert len(ts) > 100 and ts[0] < 2_000_000


def test_loop_reduces_error_with_the_spread(spec, hot) -> None:  # noqa: ANN001
    """With the strikes' own spread (sim://'s default) the loop still takes out the
    drift: measured p99 1.61 ms against the open loop's 5.61 ms (0.5, session 12's
    rate: 1.69 ms); the 1 ms target is out of reach (one strike's own spread)."""
    _, open_p99, open_vel = _play(spec, hot, 0.0, url="sim://?heating=1&spread=1")
    _, p99, vel = _play(spec, hot, RATE, url="sim://?heating=1&spread=1")
    assert p99 < open_p99 / 2 and vel < open_vel


def test_loop_reduces_error_on_a_hot_piece(spec, hot) -> None:  # noqa: ANN001
    open_res, open_p99, open_vel = _play(spec, hot, 0.0)
    res, p99, vel = _play(spec, hot, RATE)
    assert not open_res.log and open_res.max_coil_temp_ratio > 0.2  # the coils got warm
    assert open_p99 > 2_000  # heating alone puts the open loop past 2 ms
    assert p99 < open_p99 / 2 and p99 <= 1_000
    assert vel < open_vel
    assert res.log and set(res.latency_us) == set(PITCHES)
    assert all(g > 0.0 for g in res.drive_gain.values())  # warm coils: more drive


def test_corrections_stay_in_bounds(spec, hot) -> None:  # noqa: ANN001
    res, _, _ = _play(spec, hot, 1.0, max_latency_us=300.0, max_drive=0.01)
    assert res.log
    assert max(abs(c.latency_us) for c in res.log) == pytest.approx(300.0)  # it hit the bound
    assert all(abs(c.latency_us) <= 300.0 and abs(c.drive_gain) <= 0.01 for c in res.log)


def test_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match=r"rate 1.5 out of range \(allowed: 0..1\)"):
        LoopSettings(rate=1.5)
    with pytest.raises(ValueError, match="max_drive"):
        LoopSettings(max_drive=0.9)


def test_corrected_calibration_moves_the_curves(spec, hot) -> None:  # noqa: ANN001
    cal = Calibration.nominal(spec)
    res, _, _ = _play(spec, hot, RATE)
    new = corrected_calibration(cal, res)
    p = PITCHES[0]
    lat, g = res.latency_us[p], res.drive_gain[p]
    assert new.keys[p].latency_us[0] == pytest.approx(cal.keys[p].latency_us[0] + lat)
    assert new.keys[p].drive[0] == pytest.approx(cal.keys[p].drive[0] * (1 + g))
    assert list(new.keys[p].drive) == sorted(new.keys[p].drive) and new.keys[p].drive[-1] <= 1.0
    assert new.keys[21] == cal.keys[21]  # a key the loop never heard is unchanged


def test_cli_refuses_closed_loop_without_sensor(tmp_path, capsys) -> None:  # noqa: ANN001
    song = tmp_path / "x.mid"
    out = tmp_path / "cal.yaml"
    import mido

    mid = mido.MidiFile()
    tr = mido.MidiTrack()
    tr += [mido.Message("note_on", note=60, velocity=100, time=0),
           mido.Message("note_off", note=60, velocity=0, time=480)]  # fmt: skip
    mid.tracks.append(tr)
    mid.save(song)
    rc = main(["play", str(song), "--port", "serial:///dev/null", "--closed-loop", "--write-back", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--closed-loop needs a sensor" in err and "serial:///dev/null" in err
    assert not out.exists()
    rc = main(["play", str(song), "--write-back", str(out)])
    assert rc == 2 and "--write-back goes with --closed-loop" in capsys.readouterr().err
    # the note-level sensor: one note moves its key's correction (the audio ear's loop
    # takes a key's first notes as its baseline: tests/test_live_audio.py)
    rc = main(["-q", "play", str(song), "--port", "sim://?heating=1&sensor=notes", "--closed-loop", "--write-back",
               str(out)])
    assert rc == 0 and Calibration.load(out).keys[60].latency_us != Calibration.nominal(
        load_spec("piano-88-grand")).keys[60].latency_us


def test_guitar_sim_cannot_hear_live() -> None:
    """The guitar's sim:// has no live hearing yet: it says so (None), never a wrong list."""
    with open_port("sim://", load_spec("guitar-slider")) as dev:
        assert dev.heard_so_far() is None


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_heard_live_equals_the_drain_on_random_streams(spec, data) -> None:  # noqa: ANN001
    """Random strikes (any level, pulse 2..60 ms, hold or not, held 0..400 ms) and pedal
    moves on four keys, submitted in random chunks while the stream advances by random
    steps, warm coils: every note heard live is one the drain gives (same time and
    loudness), and once the stream has passed them all, all of them."""
    chans = [spec.key(p).channel for p in PITCHES]
    pmax = {c: spec.key(p).pwm_max for c, p in zip(chans, PITCHES, strict=True)}
    pedal = spec.pedal.channel
    cmds: list[Command] = []
    free = dict.fromkeys(chans, 0)
    for i in range(data.draw(st.integers(5, 60))):
        c = data.draw(st.sampled_from(chans))
        t = free[c] + data.draw(st.integers(0, 150_000))
        drive = data.draw(st.integers(1, pmax[c]))
        pulse = data.draw(st.integers(2_000, 60_000))
        hold = data.draw(st.sampled_from([0, pmax[c] // 3, drive]))
        cmds.append(Command(t, Op.PULSE_HOLD, c, drive, pulse, hold, note=i))
        end = t + max(pulse, data.draw(st.integers(0, 400_000)))
        cmds.append(Command(end, Op.RELEASE, c, note=i))
        free[c] = end + data.draw(st.integers(0, 80_000))
    for _ in range(data.draw(st.integers(0, 4))):
        cmds.append(Command(data.draw(st.integers(0, max(free.values()))), Op.SET, pedal,
                            data.draw(st.integers(0, spec.pedal.pwm_max))))  # fmt: skip
    cmds.sort(key=Command.sort_key)
    url = "sim://?heating=1&timing_sd_us=0&loudness_sd=0&heard_delay_ms=50"
    with open_port(url, spec, truth_seed=data.draw(st.integers(0, 3))) as dev:
        i, now, live = 0, cmds[0].t_us, []
        while i < len(cmds):
            j = data.draw(st.integers(i + 1, len(cmds)))
            now = max(now, cmds[j - 1].t_us - data.draw(st.integers(0, 300_000)))
            if cmds[i].t_us < now:  # nothing late here: late commands are another test
                now = cmds[i].t_us
            dev.submit(cmds[i:j])
            i = j
            dev.advance(now)
            live = dev.heard_so_far()
            now += data.draw(st.integers(1, 200_000))
        dev.advance(cmds[-1].t_us + 1_000_000)
        live = dev.heard_so_far()
        perf = dev.drain()
    assert sorted((h.t_us, h.pitch, h.velocity) for h in live) == sorted(
        (h.t_us, h.pitch, h.velocity) for h in perf.heard)  # fmt: skip


@pytest.mark.parametrize(("lag_us", "used"), [(0, 0), (1_500_000, 1)])
def test_a_lagging_ear_gets_its_notes_used(lag_us: int, used: int) -> None:
    """A note is forgotten 2 s after the audio the ear has got through, not 2 s after the
    loop's now: an ear in its own thread, 1.5 s behind, hears a note 2.6 s after its time
    and the loop still uses it; an ear that is not behind is not waited for that long."""
    from robo_player.hearing.loop import FORGET_US, _Loop, _Played, _Target
    from robo_player.performance import HeardNote
    from robo_player.planner.report import Fate

    t = _Target(0, Fate.PLAYED, 1_000_000, 990_000, 60, 100.0)
    lp = _Loop(LoopSettings(), [t], lambda a: 60, lambda a: 4095)
    lp.waiting.append(_Played(t, 0, 1.0))
    now = 1_000_000 + FORGET_US + 500_000
    stray = HeardNote(now - 100_000, 72, 90.0)  # another key's note: the loop looks at what waits
    lp.listen([stray], now, lag_us)
    lp.listen([stray, HeardNote(1_000_400, 60, 98.0)], now + 100_000, lag_us)
    assert lp.res.used == used
