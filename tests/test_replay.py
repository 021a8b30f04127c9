"""Replay of sequences: slices stay inside one episode, and ``terminal_fraction`` of them end on
a termination, before and after the buffer wraps and across a dump and load."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwm_rl.replay import SequenceReplay


def fill(replay: SequenceReplay, lengths: list[int]) -> list[tuple[int, int, bool]]:
    """Episodes of the given lengths, each ending in a termination; observation = write count.
    Returns (write, episode, terminated) per transition."""
    log, write = [], 0
    for episode, length in enumerate(lengths):
        for t in range(length):
            end = t == length - 1
            step(replay, write, episode, end)
            log.append((write, episode, end))
            write += 1
    return log


def valid_ends(log, capacity: int, horizon: int) -> int:
    """Terminations still stored with their ``horizon`` steps of the same episode before them."""
    kept = log[-capacity:]
    return sum(
        1
        for i, (_, episode, end) in enumerate(kept)
        if end and i >= horizon - 1 and all(e == episode for _, e, _ in kept[i - horizon + 1 : i + 1])
    )


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=3, max_size=30),
    horizon=st.integers(2, 4),
    capacity=st.integers(30, 80),
    fraction=st.sampled_from([0.0, 0.25, 0.5]),
)
def test_slices_stay_in_one_episode_and_the_asked_fraction_ends_on_a_termination(lengths, horizon, capacity, fraction):
    replay = SequenceReplay(capacity, horizon, 8, seed=0, terminal_fraction=fraction)
    log = fill(replay, lengths)
    if not any(length >= horizon for length in lengths[-capacity:]):
        return  # nothing the uniform sampler could draw either
    assert replay.terminal_slices() == valid_ends(log, capacity, horizon)
    for _ in range(3):
        batch = replay.sample()
        obs = batch.obs[:, :, 0]  # (H + 1, B): consecutive writes along each slice
        assert torch.equal(obs[1:] - obs[:-1], torch.ones_like(obs[1:]))
        # a termination only ever on a slice's last step (it ends its episode)
        assert not batch.terminated[:-1].any()
        k = 0 if fraction == 0.0 or not replay.terminal_slices() else max(1, round(8 * fraction))
        assert bool(batch.terminated[-1, 8 - k :].all())


def step(replay: SequenceReplay, write: int, episode: int, end: bool) -> None:
    replay.add(np.full(2, write, np.float32), np.zeros(1), 0.0, np.full(2, write + 1, np.float32), end, episode)


def test_overwritten_terminations_leave_the_index_and_a_load_rebuilds_it(tmp_path):
    replay = SequenceReplay(20, 3, 4, seed=1, terminal_fraction=0.5)
    log = fill(replay, [5, 2, 6, 4, 7, 3, 5])  # 32 writes into 20 slots
    assert replay.terminal_slices() == valid_ends(log, 20, 3) == 4
    step(replay, 32, 7, False)  # an episode in progress when the run is saved
    step(replay, 33, 7, False)
    replay.save(tmp_path / "buffer")
    loaded = SequenceReplay(20, 3, 4, seed=7, terminal_fraction=0.5)
    loaded.load(tmp_path / "buffer")
    assert loaded.terminal_slices() == replay.terminal_slices() == 4
    a, b = replay.sample(), loaded.sample()  # the buffer's generator travels with the dump
    assert torch.equal(a.obs, b.obs) and torch.equal(a.terminated, b.terminated)
    # the loaded buffer knows how long the episode in progress is: its third step ends a
    # slice (and overwrites the window of write 16's termination)
    for r in (replay, loaded):
        step(r, 34, 7, True)
    log += [(32, 7, False), (33, 7, False), (34, 7, True)]
    assert loaded.terminal_slices() == replay.terminal_slices() == valid_ends(log, 20, 3) == 4


def test_terminal_fraction_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"terminal_fraction=1.0 must lie in \[0, 1\)"):
        SequenceReplay(10, 3, 4, terminal_fraction=1.0)
