"""Online replay of sequences: TorchRL's ``TensorDictReplayBuffer`` over a
``LazyTensorStorage`` with a ``SliceSampler`` that keeps slices inside one episode."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, SliceSampler, TensorDictReplayBuffer

from .atomic import replace_dir
from .batch import SequenceBatch
from .checkpoint import CheckpointError

logging.getLogger("torchrl").setLevel(logging.WARNING)  # one INFO line per storage otherwise


_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "episode")
_PRIORITY_FILE = "terminal_priority.npy"


class SequenceReplay:
    """Stores transitions with an episode id; samples ``batch`` slices of ``horizon`` steps.

    With ``terminal_fraction`` > 0 that fraction of each batch's slices (rounded, at least one)
    ends on a termination drawn uniformly from those stored: a uniform slice ends on one with
    probability about 1 / episode length, so the continuation head and the critic would
    otherwise see an episode's end in about 1 % of what they learn from (Hopper, 10k steps).

    With ``terminal_priority`` (an exponent alpha > 0) those terminations are drawn with
    probability proportional to ``(priority + 1e-3) ** alpha`` instead: the trainer sets each
    one's priority to the continuation the model still predicts there (its error, the target
    being 0, :meth:`set_priorities`); a termination not scored yet has priority 1. Rare kinds of
    ending that the model has not learned (a cart leaving the track among pole falls) are then
    drawn about as often as the common ones it has. No importance weights: oversampling
    terminations is the point, as with ``terminal_fraction`` itself.
    """

    def __init__(
        self,
        capacity: int,
        horizon: int,
        batch: int,
        seed: int = 0,
        terminal_fraction: float = 0.0,
        terminal_priority: float = 0.0,
    ) -> None:
        if not 0.0 <= terminal_fraction < 1.0:
            raise ValueError(f"terminal_fraction={terminal_fraction} must lie in [0, 1)")
        if terminal_priority < 0.0:
            raise ValueError(f"terminal_priority={terminal_priority} must be >= 0 (0: uniform)")
        self.capacity, self.horizon, self.batch = capacity, horizon, batch
        self.terminal_fraction, self.terminal_priority = terminal_fraction, terminal_priority
        self._seed = seed
        self._priority = torch.ones(capacity)  # (capacity,): read at terminal ends only
        # storage indices of terminating transitions whose episode has ``horizon`` steps up to
        # them, and the current episode's id and stored length (to tell which do)
        self._terminal_ends: set[int] = set()
        self._sorted_ends: torch.Tensor | None = None
        self._episode, self._episode_len = None, 0
        self.buffer = TensorDictReplayBuffer(
            storage=LazyTensorStorage(capacity),
            sampler=SliceSampler(slice_len=horizon, traj_key="episode", strict_length=True),
            batch_size=batch * horizon,
            # its own generator, not the global one: sampling neither reseeds nor draws from the
            # model's RNG, and dumps/loads carry its state across a resume
            generator=torch.Generator().manual_seed(seed),
        )

    def empty_like(self) -> SequenceReplay:
        """An empty buffer with this one's capacity, slice length, batch and terminal
        sampling (a resume loads the saved buffer into it)."""
        return SequenceReplay(
            self.capacity,
            self.horizon,
            self.batch,
            seed=self._seed,
            terminal_fraction=self.terminal_fraction,
            terminal_priority=self.terminal_priority,
        )

    def __len__(self) -> int:
        return len(self.buffer)

    def add(self, obs, action, reward: float, next_obs, terminated: bool, episode: int) -> None:
        index = self.buffer.add(
            TensorDict(
                {
                    "obs": torch.as_tensor(np.asarray(obs, np.float32)),
                    "action": torch.as_tensor(np.asarray(action)),
                    "reward": torch.tensor(float(reward)),
                    "next_obs": torch.as_tensor(np.asarray(next_obs, np.float32)),
                    "terminated": torch.tensor(bool(terminated)),
                    "episode": torch.tensor(int(episode)),
                },
                batch_size=[],
            )
        )
        self._track(int(index), int(episode), bool(terminated))

    def _track(self, index: int, episode: int, terminated: bool) -> None:
        """Update the terminal slice index for a write at storage ``index``."""
        self._episode_len = self._episode_len + 1 if episode == self._episode else 1
        self._episode = episode
        # a write breaks every stored slice that covers its index (the buffer wraps around)
        self._terminal_ends.difference_update((index + j) % self.capacity for j in range(self.horizon))
        if terminated and self._episode_len >= self.horizon:
            self._terminal_ends.add(index)
        self._priority[index] = 1.0  # not scored yet
        self._sorted_ends = None

    def terminal_slices(self) -> int:
        """How many stored slices of ``horizon`` steps end on a termination."""
        return len(self._terminal_ends)

    def terminal_ends(self) -> torch.Tensor:
        """Storage indices (N,) of the terminations that end a stored slice, ascending."""
        if self._sorted_ends is None:
            self._sorted_ends = torch.tensor(sorted(self._terminal_ends), dtype=torch.long)
        return self._sorted_ends

    def terminal_sequences(self) -> tuple[torch.Tensor, SequenceBatch]:
        """Every stored slice that ends on a termination: their end indices (N,) and the
        slices as one batch (``horizon`` steps, N rows), for scoring them."""
        ends = self.terminal_ends()
        return ends, self._batch(self._slices(ends))

    def set_priorities(self, ends: torch.Tensor, priority: torch.Tensor) -> None:
        """Set the priorities (N,) of the terminations at storage indices ``ends`` (N,)."""
        if not bool(((priority >= 0) & (priority <= 1)).all()):
            raise ValueError("terminal priorities are continuation errors and must lie in [0, 1]")
        self._priority[ends] = priority.detach().float().cpu()

    def sample(self) -> SequenceBatch:
        flat = self.buffer.sample()  # (B * H,) slices laid end to end
        flat = flat.reshape(self.batch, self.horizon)  # (B, H)
        k = self._terminal_count()
        if k:
            ends = self.terminal_ends()
            # the buffer's own generator: dumps and loads carry its state across a resume
            if self.terminal_priority > 0:
                weight = (self._priority[ends] + 1e-3) ** self.terminal_priority  # (N,)
                pick = torch.multinomial(weight, k, replacement=True, generator=self.buffer._rng)
            else:
                pick = torch.randint(len(ends), (k,), generator=self.buffer._rng)
            # the sampler adds its own keys (``next``, ``index``) to a uniform draw
            flat = torch.cat([flat[: self.batch - k].select(*_FIELDS), self._slices(ends[pick])], 0)
        return self._batch(flat)

    def _slices(self, ends: torch.Tensor) -> TensorDict:
        """The stored slices (k, H) of ``horizon`` steps ending at storage indices ``ends`` (k,)."""
        steps = torch.arange(1 - self.horizon, 1)  # (H,)
        index = (ends[:, None] + steps) % self.capacity  # (k, H)
        return self.buffer.storage[index.flatten()].reshape(len(ends), self.horizon).select(*_FIELDS)

    @staticmethod
    def _batch(flat: TensorDict) -> SequenceBatch:
        td = flat.transpose(0, 1)  # (H, B)
        obs = torch.cat([td["obs"][:1], td["next_obs"]], 0)  # (H + 1, B, O)
        return SequenceBatch(obs, _model_action(td["action"]), td["reward"], td["terminated"])

    def _terminal_count(self) -> int:
        if self.terminal_fraction == 0.0 or not self._terminal_ends:
            return 0
        return max(1, round(self.batch * self.terminal_fraction))

    def transitions(self) -> TensorDict:
        """Every stored transition (for normalisation statistics)."""
        return self.buffer[: len(self.buffer)]

    def latest(self, n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Observations (n, O), actions (as the model takes them) and episode ids (n,) of the
        last ``n`` stored transitions."""
        td = self.buffer[max(0, len(self.buffer) - n) : len(self.buffer)]
        return td["obs"], _model_action(td["action"]), td["episode"].numpy()

    def checksum(self) -> str:
        """SHA-256 of every stored transition's fields, in storage order: a resume compares it
        with the one its checkpoint recorded."""
        digest = hashlib.sha256()
        td = self.transitions()
        for key in sorted(td.keys()):
            digest.update(key.encode())
            digest.update(td[key].contiguous().numpy().tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> None:
        """Dump to ``path`` via a temporary folder and a rename, so a crash keeps the old dump."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.buffer.dumps(tmp)
        # TorchRL pickles its prefetch queue; we never prefetch, and a resume must not unpickle
        (tmp / "prefetch.pkl").unlink(missing_ok=True)
        np.save(tmp / _PRIORITY_FILE, self._priority.numpy())
        replace_dir(tmp, path)

    def load(self, path: str | Path) -> None:
        path = Path(path)
        if (path / "prefetch.pkl").exists():
            raise CheckpointError(f"{path} holds a pickled prefetch queue; refusing to unpickle it")
        try:
            self.buffer.loads(path)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"the replay buffer in {path} cannot be restored: {err}") from err
        self._index_terminal_ends()  # sets every priority to 1 (unscored) ...
        if (path / _PRIORITY_FILE).exists():  # ... dumps before priorities existed keep that
            try:
                priority = torch.from_numpy(np.load(path / _PRIORITY_FILE, allow_pickle=False))
            except (OSError, ValueError) as err:
                raise CheckpointError(f"{path / _PRIORITY_FILE} cannot be read: {err}") from err
            if priority.shape != self._priority.shape:
                raise CheckpointError(
                    f"{path / _PRIORITY_FILE} holds {tuple(priority.shape)} priorities for a buffer of "
                    f"capacity {self.capacity}"
                )
            self._priority = priority.float()

    def _index_terminal_ends(self) -> None:
        """Rebuild the terminal slice index from the restored storage (it is not dumped) by
        tracking the stored transitions again, oldest first."""
        self._terminal_ends, self._sorted_ends = set(), None
        self._episode, self._episode_len = None, 0
        n = len(self.buffer)
        td = self.transitions()
        episode, terminated = td["episode"].tolist(), td["terminated"].tolist()
        for j in range(n):
            index = (self.buffer.write_count - n + j) % self.capacity
            self._track(index, episode[index], terminated[index])


def _model_action(action: torch.Tensor) -> torch.Tensor:
    """Stored actions keep the env's dtype; the world model takes float32 or int64."""
    return action.float() if action.is_floating_point() else action.long()
