"""Environment suite (imported as ``loopwm_rl.envs``)."""
