"""The planners' command buffer: commands gathered as sortable tuples, made into
:class:`~robo_player.plan.Command` objects once, after one sort.

A raw command is ``(t_us, op order, actuator, seq, op, drive, pulse_us, hold, note)``;
sorting the tuples gives :meth:`Plan.sort`'s order (a stable sort on ``(t_us, op order,
actuator)``: ``seq`` is the emission number) at C speed.
"""

from __future__ import annotations

from ..plan import Command, Op

__all__ = ["ORD", "ORD_RELEASE", "ORD_STRIKE", "Raw", "emit", "make_command"]

Raw = tuple[int, int, int, int, Op, int, int, int, int]
ORD = {op: Command(0, op, 0).sort_key()[1] for op in Op}
ORD_STRIKE, ORD_RELEASE = ORD[Op.PULSE_HOLD], ORD[Op.RELEASE]
_SET = tuple(
    getattr(Command, f).__set__
    for f in ("t_us", "op", "actuator", "drive", "pulse_us", "hold", "note", "position")
)


def make_command(
    t: int, op: Op, actuator: int, drive: int, pulse: int, hold: int, note: int
) -> Command:
    """Command(...) without the frozen dataclass's per-field object.__setattr__ (2x faster)."""
    c = object.__new__(Command)
    st, so, sa, sd, sp, sh, sn, sq = _SET
    st(c, t)
    so(c, op)
    sa(c, actuator)
    sd(c, drive)
    sp(c, pulse)
    sh(c, hold)
    sn(c, note)
    sq(c, 0)
    return c


def emit(
    raw: list[Raw], t: int, op: Op, actuator: int, drive: int = 0, pulse: int = 0,
    hold: int = 0, note: int = -1,
) -> None:  # fmt: skip
    raw.append((t, ORD[op], actuator, len(raw), op, drive, pulse, hold, note))
