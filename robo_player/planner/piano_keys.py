"""Stage 5 of the piano planner (:mod:`robo_player.planner.piano`): per key, in onset
order, on the planned strike times: merge again where staggering closed a gap, release
each note before the key must return for the next strike (or, for a re-strike, once it
has sounded), at least its strike pulse, at most the coil's on-time and heat limits; and
write the strike and release commands."""

from __future__ import annotations

import math

from ..plan import Op
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from .commands import CommandBuffer, make_command
from .constraints import INF_US, Limits, Playability, pitch_name, time_to_limit_us
from .pedal import lim_ms
from .piano_notes import _merge, _Rec
from .piano_repeats import _restrike_final


def _release_pass(
    by_key: dict[int, list[_Rec]],
    spec: PianoSpec,
    oracle: Playability,
    calibration: Calibration,
    buf: CommandBuffer,
) -> list[_Rec]:
    """Stage 5 on every key: plan each kept note's release and write its commands into
    ``buf``; returns the notes a coil limit cut short (the pedal may carry them)."""
    lim = oracle.limits
    pulse = lim.pulse_us
    cmds, keys = buf.commands, buf.keys
    cmd_add, key_add, t_scale = cmds.append, keys.append, buf.t_scale
    carry_wanted: list[_Rec] = []
    tau_us, heat_limit, heat_k = lim.tau_us, lim.heat_limit_k, lim.heat_k_per_s
    max_on, on_time_why = lim.max_on_us, f"coil on-time limit ({lim.max_on_us / 1e6:g} s)"
    # rules.heat_after over one strike pulse, whose factor is the same for every strike;
    # the other heat_after calls of this loop are inlined too (the same float operations).
    e_pulse = math.exp(-pulse / tau_us)
    strike_op, release_op = Op.PULSE_HOLD, Op.RELEASE
    end = _Rec(-1, -1, 0)  # after a key's last note: releases it with nothing to wait for
    end.s = INF_US
    for pitch, lst in by_key.items():
        key = spec.key(pitch)
        pwm_max = key.pwm_max
        hold = round(lim.hold_duty * pwm_max)
        hold_rate = lim.rate(hold / pwm_max)
        hold_steady = hold_rate * tau_us * 1e-6
        hold_cools = hold_steady <= heat_limit  # a hold never heats the coil past its limit
        ch = key.channel
        strike_key, release_key = buf.base(Op.PULSE_HOLD, ch), buf.base(Op.RELEASE, ch)
        klim = oracle.limits_for(pitch)
        back = klim.key_return_us + klim.release_margin_us  # latest_release_us(s) = s - back
        # restrike_need_us(lat) = max(lat, fast_floor) + fast_add (inlined: per note)
        fast_floor = klim.restrike_floor_us(0)
        fast_add = klim.restrike_need_us(0) - fast_floor
        prev = None
        prev_temp = 0.0  # temperature rise at the end of prev's pulse
        lst.append(end)
        for r in lst:
            if r.drop is not None:
                continue
            s = r.s
            if prev is None:
                cool = 0.0  # a cold coil
            else:
                ps = prev.s
                restrike = s - ps < prev.need
                if restrike and s - ps < prev.fast:
                    # Not held longer: the power budget counted prev's hold as planned.
                    _merge(prev, r, s - ps, min(prev.need, prev.fast), extend=False)
                    continue
                # prev's release: as written (with its delay), before the key must return
                # for r (or, for a re-strike, as soon as prev has sounded), at least its
                # pulse, at most the on-time and the heat limits
                cap = s - back
                if restrike:
                    cap = max(cap, ps + klim.restrike_floor_us(prev.dc.latency_us))  # type: ignore[union-attr]
                delta = prev.late + prev.stagger
                want = prev.absorbed_end + delta
                rel = want if want < cap else cap
                # a re-strike's previous note may be cut to the pulse of full effect
                least_on = klim.restrike_floor_us(0) if restrike else pulse
                if rel < ps + least_on:
                    rel = ps + least_on
                # never before it sounds (a softer re-strike's latency is longer than the
                # intended onset allowed for)
                sounds = ps + prev.dc.latency_us  # type: ignore[union-attr]
                if rel < sounds:
                    rel = sounds
                why = ""
                if rel - ps > max_on:
                    rel = ps + max_on
                    why = on_time_why
                if prev_temp >= heat_limit or not hold_cools:
                    cut = time_to_limit_us(prev_temp, hold_rate, tau_us, heat_limit)
                    if cut is not None and rel > ps + pulse + cut:
                        rel = ps + pulse + cut
                        why = "coil heat limit"
                # heat_after(prev_temp, hold time, hold_rate), then cooling to s
                t_end = hold_steady + (prev_temp - hold_steady) * math.exp(
                    -max(0, rel - ps - pulse) / tau_us
                )
                cool = t_end * math.exp(-(s - rel) / tau_us)
            if r is not end:
                if prev is None or not restrike:
                    r.dc = r.dc0  # the key is fully up (staggering may have made room)
                elif not _restrike_final(r, s - rel, klim, calibration.curve(pitch), pwm_max):
                    r.drop = f"merged: partial return too weak ({(s - rel) / 1000:.1f} ms after the release)"
                    continue
                lat_r = r.dc.latency_us  # type: ignore[union-attr]
                r.fast = (lat_r if lat_r > fast_floor else fast_floor) + fast_add
                dc = r.dc
                assert dc is not None
                duty = dc.counts / pwm_max
                steady = duty * duty * heat_k * tau_us * 1e-6  # of the strike's pulse
                t1 = steady + (cool - steady) * e_pulse
                if t1 > heat_limit:
                    r.drop = _heat_reason(pitch, t1, lim)
                    continue
            if prev is not None:
                # commit prev's release; say why it changed
                if want > cap:
                    want = cap  # shortened so the key can return before the repeat
                    prev.notes.append(
                        f"shortened for the repeat: released {lim_ms(prev.absorbed_end + delta - cap)} early"
                    )
                if rel < want:
                    # Cut by the on-time or heat limit: the pedal may carry the rest (stage 6).
                    prev.carry = want
                    prev.cut_by = why
                    carry_wanted.append(prev)
                elif rel > want:
                    prev.notes.append(
                        "lengthened to its strike pulse" if rel == ps + min(pulse, least_on)
                        else "lengthened until it sounds"
                    )
                prev.rel = prev.sound_end = rel
                i = prev.i
                key_add(ps * t_scale + strike_key + len(keys))
                # (released inside its pulse for a re-strike: the pulse ends there, past
                # strike.pulse_full_max_us, so it acts in full)
                p_us = pulse if rel - ps >= pulse else rel - ps
                cmd_add(make_command(ps, strike_op, ch, prev.dc.counts, p_us, hold, i))  # type: ignore[union-attr]
                key_add(rel * t_scale + release_key + len(keys))
                cmd_add(make_command(rel, release_op, ch, 0, 0, 0, i))
            if r is end:
                break
            prev, prev_temp = r, t1
        lst.pop()
    return carry_wanted


def _heat_reason(pitch: int, temp_k: float, lim: Limits) -> str:
    return (
        f"coil heat: {pitch_name(pitch)} would reach {temp_k:.1f} K "
        f"(limit {lim.heat_limit_k:.1f} K with margin)"
    )
