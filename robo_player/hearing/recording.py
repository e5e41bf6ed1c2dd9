"""Recordings in and out: WAV files, sound cards (PortAudio through ``sounddevice``).

``sounddevice`` is optional (``pip install 'robo_player[hearing]'``, and PortAudio from
the system: Debian ``libportaudio2``); without it, or without an input device, the
commands that need a sound card say so and stop.
"""

from __future__ import annotations

import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HearingError
from ..fileio import atomic_open


@dataclass(slots=True)
class Recording:
    """Mono samples in -1..1 and their rate (an :class:`~robo_player.performance.AudioTake`)."""

    data: np.ndarray
    sample_rate: int

    def samples(self) -> np.ndarray:
        return self.data


def read_wav(path: str | Path) -> Recording:
    """A PCM WAV file (8/16/24/32-bit, any channels: mixed to mono)."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wf:
            ch, width, rate, n = wf.getnchannels(), wf.getsampwidth(), wf.getframerate(), wf.getnframes()
            raw = wf.readframes(n)
    except FileNotFoundError as err:
        raise HearingError(f"{path}: no such recording") from err
    except (wave.Error, EOFError) as err:
        raise HearingError(f"{path}: not a PCM WAV file ({err})") from err
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise HearingError(f"{path}: {8 * width}-bit samples (allowed: 8, 16, 24, 32)")
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return Recording(x, rate)


def write_wav(path: str | Path, rec: Recording) -> Path:
    """16-bit mono PCM, atomically."""
    path = Path(path)
    pcm = np.clip(np.rint(np.asarray(rec.data, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with atomic_open(path, "wb") as fh, wave.open(fh, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rec.sample_rate)
        wf.writeframes(pcm.tobytes())
    return path


def _sounddevice() -> Any:
    try:
        import sounddevice  # noqa: PLC0415 - optional, and it loads PortAudio on import
    except ImportError as err:
        raise HearingError(
            "no sound card support: the Python package sounddevice is not installed "
            "(pip install 'robo_player[hearing]')"
        ) from err
    except OSError as err:  # the package is there, the PortAudio library is not
        raise HearingError(
            f"no sound card support: PortAudio is missing ({err}); install it "
            "(Debian: apt-get install libportaudio2)"
        ) from err
    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    """Sound-card inputs: index, name, channels, default sample rate."""
    sd = _sounddevice()
    try:
        devs = sd.query_devices()
    except Exception as err:  # noqa: BLE001 - PortAudio raises its own error type
        raise HearingError(f"no sound card: PortAudio found none ({err})") from err
    out = [
        {"index": i, "name": d["name"], "channels": int(d["max_input_channels"]),
         "sample_rate": float(d["default_samplerate"])}
        for i, d in enumerate(devs)
        if int(d.get("max_input_channels", 0)) > 0
    ]
    if not out:
        raise HearingError("no sound card input: PortAudio lists no device with an input channel")
    return out


def open_input(device: str) -> int:
    """The index of input ``device`` (an index or a part of its name)."""
    devs = input_devices()
    if device.isdigit():
        idx = int(device)
        if any(d["index"] == idx for d in devs):
            return idx
    else:
        hits = [d for d in devs if device.lower() in str(d["name"]).lower()]
        if len(hits) == 1:
            return int(hits[0]["index"])
    names = ", ".join(f"{d['index']}: {d['name']}" for d in devs)
    raise HearingError(f"--mic {device}: no such input (inputs: {names})")


class MicRecorder:
    """Records from a sound card while a take plays (start, then stop -> Recording)."""

    def __init__(self, device: str, sample_rate: int = 48000) -> None:
        self._sd = _sounddevice()
        self.index = open_input(device)
        self.sample_rate = sample_rate
        self._chunks: list[np.ndarray] = []
        self._stream: Any = None

    def start(self) -> None:
        self._chunks = []

        def cb(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:  # noqa: ARG001
            self._chunks.append(indata[:, 0].copy())

        self._stream = self._sd.InputStream(
            device=self.index, channels=1, samplerate=self.sample_rate, dtype="float32", callback=cb
        )
        self._stream.start()

    def stop(self) -> Recording:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        return Recording(data, self.sample_rate)


class MicBlocks:
    """A sound card's input while a stream plays, as the closed loop's ear takes it
    (hearing/live_audio.py): blocks of ``blocksize`` mono samples, each with the time its
    first sample was captured (PortAudio's ``inputBufferAdcTime``, on the stream's
    clock). :meth:`take` hands over the blocks arrived since its last call and the
    stream's clock now, so that the caller can bring the capture times to its own clock."""

    def __init__(self, device: str, sample_rate: int = 48000, blocksize: int = 512) -> None:
        self._sd = _sounddevice()
        self.index = open_input(device)
        self.device = device
        self.sample_rate = sample_rate
        self.blocksize = blocksize
        self._lock = threading.Lock()
        self._got: list[tuple[np.ndarray, float]] = []
        self._stream: Any = None
        self.overflows = 0

    def start(self) -> None:
        def cb(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:  # noqa: ARG001
            with self._lock:
                self._got.append((indata[:, 0].copy(), float(time.inputBufferAdcTime)))
                if status:
                    self.overflows += 1

        self._stream = self._sd.InputStream(
            device=self.index, channels=1, samplerate=self.sample_rate, blocksize=self.blocksize,
            dtype="float32", callback=cb,
        )
        self._stream.start()

    def take(self) -> tuple[list[tuple[np.ndarray, float]], float]:
        """(the blocks since the last call with their capture times (s), the stream's time now (s))."""
        if self._stream is None:
            raise HearingError(f"--mic {self.device}: the input is not started")
        now = float(self._stream.time)
        with self._lock:
            got, self._got = self._got, []
        return got, now

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def __enter__(self) -> MicBlocks:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

