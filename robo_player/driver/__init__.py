"""Transports opened by URL, and the devices behind them."""

from .ports import Device, HeardNote, Performance, open_port, register_port

__all__ = ["Device", "HeardNote", "Performance", "open_port", "register_port"]
