"""Action repeat: each agent decision is applied for ``k`` env steps.

Gymnasium 1.x has no action-repeat wrapper (TorchRL's ``FrameSkipTransform`` works on
TensorDict envs, which the trainer does not use), so this one is written here.
"""

from __future__ import annotations

import gymnasium as gym


class ActionRepeat(gym.Wrapper):
    """Repeats each action ``k`` times and sums the rewards.

    The repeat stops early when the episode terminates or is truncated. ``info["env_steps"]``
    is the number of underlying env steps the call took, so a trainer can count env steps
    rather than decisions.

    Args:
        env: the env to wrap.
        k: steps per action, >= 1.
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"action_repeat must be an integer >= 1, got {k!r}")
        super().__init__(env)
        self.k = int(k)

    def step(self, action):
        total, steps = 0.0, 0
        while steps < self.k:
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        info = {**info, "env_steps": steps}
        return obs, total, terminated, truncated, info
