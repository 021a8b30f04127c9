"""Named points where a test can kill the process, to prove a run survives being killed there.

``LOOPWM_KILL_AT=point`` (or ``point@n`` for the n-th time the point is reached) makes
:func:`reach` send SIGKILL to this process at that point; unset, :func:`reach` only compares a
string. The points a training run passes: ``collect`` (after an env step, before the replay
stores it), ``wm_update`` (after the world model's step, before the critic's), ``critic_update``
(after the critic's step), ``eval`` (in the middle of an evaluation episode), and inside a
checkpoint: ``save:buffer`` (buffer written, weights not yet), ``save:model`` (weights in their
temporary file, not yet renamed over the last checkpoint), ``save:swap`` (weights renamed, buffer
not yet swapped in) and ``save:config``.
"""

from __future__ import annotations

import os
import signal

ENV = "LOOPWM_KILL_AT"
_seen: dict[str, int] = {}


def reach(point: str) -> None:
    """SIGKILL this process if ``LOOPWM_KILL_AT`` names ``point`` (and its count is reached)."""
    target = os.environ.get(ENV)
    if not target:
        return
    name, _, count = target.partition("@")
    if name != point:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
