"""What a session knows and reports: the device's identity, the stream's settings, the
fate of every command (:class:`StreamResult`) and the resume point (:class:`ResumeState`).

Kept apart from :mod:`.stream` (the session itself); :mod:`.stream` re-exports them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TransportError
from ..fileio import write_text
from ..plan import Plan
from ..protocol.messages import Message


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    protocol_version: int
    fw_version: int
    board: str
    clock_hz: int
    queue_size: int
    max_actuators: int
    rx_buffer: int
    max_payload: int
    boot_id: int
    max_on_us_limit: int
    max_level: int
    late_slack_us: int
    state: int

    @classmethod
    def from_message(cls, m: Message) -> DeviceInfo:
        d = m.as_dict()
        d["board"] = bytes(d["board"]).decode("ascii", "replace")
        return cls(**d)


@dataclass(slots=True)
class StreamConfig:
    lead_min_s: float = 0.25  # a command is on the wire at least this long before its time
    lead_max_s: float = 1.0  # ... and taken into a frame this long before it at the earliest
    # ... except that a frame about to go out also takes the commands due within this
    # (while they fit it and the device's queue has room): on sparse music a frame holds
    # 1.75 s of commands instead of 0.75 s, so its framing and ACK cost half per note
    fill_ahead_s: float = 2.0
    start_delay_s: float = 0.4  # the first command plays this long after streaming starts
    watchdog_ms: int = 90  # the watchdog fires after this much silence ...
    watchdog_drain_ms: int = 0  # ... the queue plays out at most this long; then all-off
    keepalive_s: float = 0.03  # feed the watchdog at least this often (< watchdog / 3)
    status_s: float = 0.25  # heartbeat -> status this often
    clock_period_s: float = 1.0  # clock queries once the sync has settled
    sync_burst: int = 16  # get_clock exchanges before streaming
    level_shift: int = 0  # drive resolution on the wire: 2**level_shift counts
    reply_timeout_s: float = 1.0  # identify/configure answers
    # after the port opens, wait this long for the firmware to answer at all: an Arduino
    # Mega resets into its bootloader when its USB serial port opens (DTR) and runs the
    # firmware 1-2 s later (serial:// defaults to 3 s; 0: the reply timeout alone)
    boot_wait_s: float = 0.0
    open_tries: int = 3  # open (SYNC + identify) again when a lost frame stalled it
    drain_timeout_s: float = 5.0  # after the last command: wait this long for the device
    max_tries: int = 6
    clock_scale: float = 1.0  # MCU seconds per host second (simavr paced slower than real)
    # When the device's queue, not the lead window, decides what goes (short lead), a
    # frame waits for this many records (credits come back a few at a time; a frame per
    # ACK would spend the wire on framing) ...
    batch_records: int = 12
    # ... unless its first command plays within this long
    batch_urgent_s: float = 0.02
    # ... and holds at most this many (short lead only)
    batch_max_records: int = 20


@dataclass(slots=True)
class CommandOutcome:
    """What happened to one plan command (index into ``plan.commands``)."""

    index: int
    status: str  # played | late | late_release | refused_* | flushed | not_sent | unknown
    device_index: int = -1
    clock: int = 0  # the MCU clock it was scheduled at (full width)


@dataclass(slots=True)
class StreamResult:
    outcomes: list[CommandOutcome] = field(default_factory=list)
    start_index: int = 0
    last_done_index: int = -1  # last plan index known to have run
    # where --resume starts: after the last command that may have run (played, or sent
    # and its fate unknown: a cut link's queue plays out on the MCU before its watchdog
    # goes all-off), so that no note is struck twice
    resume_index: int = 0
    error: str = ""  # why streaming stopped early ("" = it finished)
    device: DeviceInfo | None = None
    link: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, int]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    short_lead: int = 0  # commands sent with less than lead_min_s to spare (queue full)
    boot_ids: list[int] = field(default_factory=list)
    exc: Exception | None = None  # the fault that ended streaming early
    # the driver's counts beside the firmware's own (its last status): {"driver": {...},
    # "firmware": {...}, "agree": bool, "lost_reports": n} (empty when no status came)
    reconciliation: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out


# ---- resume state ---------------------------------------------------------------------
@dataclass(slots=True)
class ResumeState:
    """What ``play --resume`` needs: where the last run stopped (``next_index``)."""

    spec_hash: str
    plan_commands: int
    next_index: int  # first plan command not known to have run
    note: int  # score note of the last command that ran (-1 if none)
    t_us: int  # its performance time
    reason: str = ""

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ResumeState:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(**d)
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise TransportError(f"{path}: cannot read the resume state: {err}") from err

    def start_index_for(self, plan: Plan, spec_hash: str) -> int:
        if self.spec_hash != spec_hash or self.plan_commands != len(plan):
            raise TransportError(
                f"resume state is for another plan (spec {self.spec_hash}, "
                f"{self.plan_commands} commands; now spec {spec_hash}, {len(plan)} commands)"
            )
        return self.next_index


__all__ = ["CommandOutcome", "DeviceInfo", "ResumeState", "StreamConfig", "StreamResult"]
