"""Planners and agents (imported as ``loopwm_rl.agents``)."""
