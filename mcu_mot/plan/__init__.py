"""Static memory planning: every activation and scratch buffer gets a fixed arena offset."""

from mcu_mot.plan.planner import MemoryPlan, plan_memory

__all__ = ["MemoryPlan", "plan_memory"]
