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


class SequenceReplay:
    """Stores transitions with an episode id; samples ``batch`` slices of ``horizon`` steps."""

    def __init__(self, capacity: int, horizon: int, batch: int, seed: int = 0) -> None:
        self.horizon, self.batch = horizon, batch
        self.buffer = TensorDictReplayBuffer(
            storage=LazyTensorStorage(capacity),
            sampler=SliceSampler(slice_len=horizon, traj_key="episode", strict_length=True),
            batch_size=batch * horizon,
            # its own generator, not the global one: sampling neither reseeds nor draws from the
            # model's RNG, and dumps/loads carry its state across a resume
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.buffer)

    def add(self, obs, action, reward: float, next_obs, terminated: bool, episode: int) -> None:
        self.buffer.add(
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

    def sample(self) -> SequenceBatch:
        flat = self.buffer.sample()  # (B * H,) slices laid end to end
        td = flat.reshape(self.batch, self.horizon).transpose(0, 1)  # (H, B)
        obs = torch.cat([td["obs"][:1], td["next_obs"]], 0)  # (H + 1, B, O)
        return SequenceBatch(obs, _model_action(td["action"]), td["reward"], td["terminated"])

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
        replace_dir(tmp, path)

    def load(self, path: str | Path) -> None:
        path = Path(path)
        if (path / "prefetch.pkl").exists():
            raise CheckpointError(f"{path} holds a pickled prefetch queue; refusing to unpickle it")
        try:
            self.buffer.loads(path)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"the replay buffer in {path} cannot be restored: {err}") from err


def _model_action(action: torch.Tensor) -> torch.Tensor:
    """Stored actions keep the env's dtype; the world model takes float32 or int64."""
    return action.float() if action.is_floating_point() else action.long()
