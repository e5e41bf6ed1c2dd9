"""The ``sim://`` device: a plan in, what the simulated microphone heard out.

Opened through the port registry (``open_port("sim://?truth_seed=3", spec)``) or
directly with :func:`open_sim`. Options (query string or keyword arguments; query values
arrive as strings):

- ``truth_seed`` (int, default 0): draw the hidden truth from this seed;
- ``truth`` (path, or a :class:`~robo_player.sim.truth.Truth`): read it instead;
- ``sensor_seed`` (int, default 0): seed of the microphone's noise;
- ``timing_sd_us`` (float >= 0, default 200), ``loudness_sd`` (float >= 0, default 1):
  the microphone's noise.

One device is one session at the piano: each :meth:`SimDevice.play` starts from where
the previous one ended (coils keep their heat, keys left down stay down, a burnt coil
stays burnt), 1 s of virtual time after the previous plan's last event. Performance
times are relative to the start of each plan, as on a real device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult

from ..performance import Performance, Progress
from ..errors import PlanError, TransportError
from ..plan import Plan
from ..spec.model import PianoSpec
from .physics import PianoPhysics, expand_plan_columns
from .sensor import LOUDNESS_SD, TIMING_SD_US, Microphone
from .truth import Truth

log = logging.getLogger(__name__)

_OPTIONS = ("truth_seed", "truth", "sensor_seed", "timing_sd_us", "loudness_sd")


def _int_opt(url: str, name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TransportError(f"{url}: option {name}={value!r} must be an integer")
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as err:
        raise TransportError(f"{url}: option {name}={value!r} must be an integer") from err


def _float_opt(url: str, name: str, value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise TransportError(f"{url}: option {name}={value!r} must be a number >= 0") from err
    if not x >= 0.0 or x == float("inf"):
        raise TransportError(f"{url}: option {name}={value!r} must be a finite number >= 0")
    return x


class SimDevice:
    """A simulated piano behind the :class:`~robo_player.driver.ports.Device` protocol."""

    def __init__(
        self, url: str, spec: PianoSpec, truth: Truth, microphone: Microphone
    ) -> None:
        self.url = url
        self.spec = spec
        self._truth = truth  # hidden: only the simulator may read it
        self._physics = PianoPhysics(spec, truth)
        self._mic = microphone
        self._spec_hash = spec.spec_hash  # computed once: it hashes the whole spec
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def energised(self) -> list[int]:
        """Actuators whose coil is on at the end of the last plan."""
        return self._physics.energised()

    def play(self, plan: Plan, progress: Progress | None = None) -> Performance:
        if not self._open:
            raise TransportError(f"{self.url}: device is closed")
        if plan.spec_hash and plan.spec_hash != self._spec_hash:
            raise PlanError(
                f"{self.url}: plan was made for spec {plan.spec_name!r} (hash {plan.spec_hash}), "
                f"this device is {self.spec.name!r} (hash {self._spec_hash})"
            )
        events = expand_plan_columns(plan, self.spec)
        perf, notes = self._physics.run_columns(events, progress)
        self._mic.listen(perf, notes)
        perf.extra["pipeline_delay_us"] = plan.pipeline_delay_us
        log.debug("%s: played %d commands, heard %d notes", self.url, len(plan), len(perf.heard))
        return perf

    def close(self) -> None:
        self._open = False

    def __enter__(self) -> SimDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimDevice({self.url!r}, spec={self.spec.name!r}, open={self._open})"


def open_sim(
    url_parts: SplitResult | str,
    spec: PianoSpec,
    truth_seed: object = None,
    truth: object = None,
    sensor_seed: object = None,
    **opts: Any,
) -> SimDevice:
    """Open a simulated piano for ``spec`` (see the module doc for the options)."""
    if isinstance(url_parts, str):
        url = url_parts
    else:
        url = f"{url_parts.scheme}://{url_parts.netloc}{url_parts.path}"
        url += f"?{url_parts.query}" if url_parts.query else ""
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise TransportError(
            f"{url}: unknown option {unknown[0]!r} (allowed: {', '.join(_OPTIONS)})"
        )
    if truth is not None and truth_seed is not None:
        raise TransportError(f"{url}: give either truth or truth_seed, not both")
    if isinstance(truth, Truth):
        the_truth = truth
        where = "<truth>"
    elif truth is not None:
        where = str(truth)
        if not isinstance(truth, str | Path):
            raise TransportError(f"{url}: option truth={truth!r} must be a file path")
        the_truth = Truth.load(truth)  # SpecError naming the file on any fault
    else:
        seed = 0 if truth_seed is None else _int_opt(url, "truth_seed", truth_seed)
        the_truth = Truth.draw(spec, seed)
        where = f"truth_seed={seed}"
    the_truth.check_for(spec, where)
    mic = Microphone(
        seed=0 if sensor_seed is None else _int_opt(url, "sensor_seed", sensor_seed),
        timing_sd_us=_float_opt(url, "timing_sd_us", opts.get("timing_sd_us", TIMING_SD_US)),
        loudness_sd=_float_opt(url, "loudness_sd", opts.get("loudness_sd", LOUDNESS_SD)),
    )
    return SimDevice(url, spec, the_truth, mic)
