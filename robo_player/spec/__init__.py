"""Hardware specs (YAML -> frozen dataclasses) and calibration tables."""

from .actuators import Actuator, ActuatorKind, ActuatorMap, piano_actuators
from .guitar import GuitarSpec
from .loader import (
    DEFAULT_SPEC,
    SPEC_DIR,
    list_specs,
    load_spec,
    resolve_spec_path,
    spec_family,
    spec_from_mapping,
)
from .model import (
    FAMILIES,
    SUPPORTED_FAMILIES,
    DriverBoard,
    DriverKind,
    InstrumentSpec,
    KeySpec,
    NominalCurves,
    PedalSpec,
    PianoSpec,
    PowerSpec,
    StrikeSpec,
    SyncClickSpec,
    ThermalSpec,
    TimingSpec,
)
from .schema import note_to_pitch, pitch_to_note, spec_json_schema

__all__ = [
    "DEFAULT_SPEC",
    "FAMILIES",
    "SPEC_DIR",
    "SUPPORTED_FAMILIES",
    "Actuator",
    "ActuatorKind",
    "ActuatorMap",
    "DriverBoard",
    "DriverKind",
    "GuitarSpec",
    "InstrumentSpec",
    "KeySpec",
    "NominalCurves",
    "PedalSpec",
    "SyncClickSpec",
    "PianoSpec",
    "PowerSpec",
    "StrikeSpec",
    "ThermalSpec",
    "TimingSpec",
    "list_specs",
    "load_spec",
    "note_to_pitch",
    "piano_actuators",
    "pitch_to_note",
    "resolve_spec_path",
    "spec_family",
    "spec_from_mapping",
    "spec_json_schema",
]
