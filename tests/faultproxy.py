"""The fault-injecting TCP proxy lives in the package (the link soak benchmark uses it too)."""

from mcu_mot.device.faultproxy import Counters, FaultProxy, Faults, SilentServer, faults_at

__all__ = ["Counters", "FaultProxy", "Faults", "SilentServer", "faults_at"]
