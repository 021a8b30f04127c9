"""Replay of sequences: slices stay inside one episode, and ``terminal_fraction`` of them end on
a termination, before and after the buffer wraps and across a dump and load; with
``terminal_priority`` those terminations are drawn by the priorities the trainer sets."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopwm_rl.checkpoint import CheckpointError
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


def test_terminal_priority_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"terminal_priority=-0.5 must be >= 0"):
        SequenceReplay(10, 3, 4, terminal_fraction=0.5, terminal_priority=-0.5)
    replay = SequenceReplay(40, 3, 4, terminal_fraction=0.5, terminal_priority=1.0)
    fill(replay, [5, 5])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        replay.set_priorities(replay.terminal_ends(), torch.tensor([0.5, 1.5]))


def terminal_draws(replay: SequenceReplay, k: int, batches: int = 200) -> np.ndarray:
    """How often each stored termination (by its observation) ended one of the ``k`` slices
    a batch draws to end on one (its last rows; uniform slices may end on one too)."""
    ends = replay.terminal_ends()
    counts = dict.fromkeys(replay.buffer.storage[ends]["obs"][:, 0].tolist(), 0)
    for _ in range(batches):
        batch = replay.sample()
        for row in range(replay.batch - k, replay.batch):
            counts[float(batch.obs[-2, row, 0])] += 1
    return np.array(list(counts.values()))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_terminations_are_drawn_by_their_priority(alpha):
    """One termination the model misses (priority 1) among five it has learned (0): at alpha 1
    nearly every terminal slice ends on it, at alpha 0 each is drawn about equally often."""
    replay = SequenceReplay(100, 3, 8, seed=3, terminal_fraction=0.5, terminal_priority=alpha)
    fill(replay, [6] * 6)
    ends = replay.terminal_ends()
    assert len(ends) == 6
    missed = torch.zeros(6)
    missed[2] = 1.0
    replay.set_priorities(ends, missed)
    share = terminal_draws(replay, k=4) / (200 * 4)  # 4 terminal slices per batch of 8
    if alpha:
        assert share[2] > 0.95
    else:
        assert np.all(np.abs(share - 1 / 6) < 0.06)


def test_a_new_termination_counts_as_missed_and_priorities_survive_a_dump(tmp_path):
    replay = SequenceReplay(100, 3, 8, seed=3, terminal_fraction=0.5, terminal_priority=1.0)
    fill(replay, [6] * 4)
    replay.set_priorities(replay.terminal_ends(), torch.tensor([0.0, 0.2, 0.0, 0.0]))
    step(replay, 24, 4, False)
    step(replay, 25, 4, False)
    step(replay, 26, 4, True)  # not scored yet
    assert replay._priority[replay.terminal_ends()].tolist() == pytest.approx([0.0, 0.2, 0.0, 0.0, 1.0])
    replay.save(tmp_path / "buffer")
    loaded = SequenceReplay(100, 3, 8, seed=9, terminal_fraction=0.5, terminal_priority=1.0)
    loaded.load(tmp_path / "buffer")
    assert torch.equal(loaded._priority, replay._priority)
    a, b = replay.sample(), loaded.sample()  # same draws, the priorities included
    assert torch.equal(a.obs, b.obs)
    # a buffer's empty twin samples the same way (a resume loads into it)
    twin = replay.empty_like()
    assert (twin.capacity, twin.horizon, twin.batch) == (100, 3, 8)
    assert (twin.terminal_fraction, twin.terminal_priority) == (0.5, 1.0) and len(twin) == 0


def test_a_dump_without_priorities_loads_unscored_and_a_corrupt_one_is_named(tmp_path):
    replay = SequenceReplay(50, 3, 4, seed=0, terminal_fraction=0.5, terminal_priority=1.0)
    fill(replay, [5, 5])
    replay.set_priorities(replay.terminal_ends(), torch.zeros(2))
    replay.save(tmp_path / "buffer")
    (tmp_path / "buffer" / "terminal_priority.npy").unlink()  # a dump from before priorities
    loaded = replay.empty_like()
    loaded.load(tmp_path / "buffer")
    assert loaded._priority[loaded.terminal_ends()].tolist() == [1.0, 1.0]
    (tmp_path / "buffer" / "terminal_priority.npy").write_bytes(b"not an array")
    with pytest.raises(CheckpointError, match=r"terminal_priority\.npy cannot be read"):
        replay.empty_like().load(tmp_path / "buffer")
