"""Halting rules: how many loops each sample of a batch runs (``LOOPWM_SPEC.md`` §2, §7).

The world model's depth loop calls :meth:`HaltingRule.decide` after every loop with the
per-loop readout of the samples still active. A rule returns which of them halt now and what
they emit. No rule can exceed the cap: the depth loop halts everything at the cap itself.

Trainable rules (``learned``, ``act``) read *detached* features and are trained on *detached*
per-loop losses, so the world model is the same whatever rule is chosen (a prototype that
trained PonderNet through the world model put fewer loops on hard transitions, not more; that
measurement predates this repository and is not reproduced here).

Training depth is a rule too: :class:`ScheduledHalting` runs each sample to the loop count its
:class:`Schedule` draws and cuts gradients before the last ``mu_bwd`` loops.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .config import HaltingConfig


@dataclasses.dataclass
class LoopReadout:
    """Predictions decoded after one loop for the n samples still running."""

    z: torch.Tensor  # (n, D) next latent
    delta: torch.Tensor  # (n, O) normalised next-observation delta
    reward: torch.Tensor  # (n,) normalised reward
    cont_logit: torch.Tensor  # (n,)
    change: torch.Tensor  # (n, O) delta minus the previous loop's delta
    features: torch.Tensor | None  # (n, F) detached halting features; None when no rule reads them

    def fields(self) -> dict[str, torch.Tensor]:
        return {
            "z": self.z,
            "delta": self.delta,
            "reward": self.reward,
            "cont_logit": self.cont_logit,
        }


EMITTED = ("z", "delta", "reward", "cont_logit")


def feature_dim(latent_dim: int, obs_dim: int) -> int:
    """Width F of :func:`halting_features`: the latent D, the change O and the loop fraction."""
    return latent_dim + obs_dim + 1


def halting_features(z: torch.Tensor, change: torch.Tensor, t: int, max_loops: int) -> torch.Tensor:
    """What a trained rule sees after loop t: the next latent z (n, D), how much the predicted
    delta moved this loop (n, O) and t / max_loops. Detached: the world model does not learn
    from the halting head. Returns (n, F)."""
    return torch.cat([z, change, torch.full_like(change[:, :1], t / max_loops)], -1).detach()


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Training depth per sample: run ``stop_at`` loops, cut gradients entering loop
    ``detach_at + 1`` (truncated backprop through the last loops), start the loop from a
    Gaussian state of std ``init_std`` (None: every row from h = 0, as at inference)."""

    stop_at: torch.Tensor  # (B,) int64
    detach_at: torch.Tensor  # (B,) int64
    init_std: torch.Tensor | None = None  # (B,) float
    local: bool = False
    """Detach the state entering every loop: each loop learns from its own prediction only."""

    def zero_start(self) -> torch.Tensor:
        """(B,) bool: rows whose loop starts from h = 0, as at inference."""
        return torch.ones_like(self.stop_at, dtype=torch.bool) if self.init_std is None else self.init_std == 0


class HaltingRule(nn.Module):
    """Base class. Subclasses implement ``decide`` and, when trainable, ``loss``."""

    name = "base"
    trainable = False

    def __init__(self, cfg: HaltingConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def start(self, n: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample state, filtered alongside the active set."""
        return {}

    def decide(
        self, t: int, cap: int, out: LoopReadout, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``decide(t, cap, out, state) -> (halt (n,) bool, emitted outputs)``.

        t counts loops from 1; every sample halts at t == cap whatever this returns.
        """
        raise NotImplementedError("decide(t, cap, out, state) -> (halt, emitted)")

    def loss(
        self, losses: torch.Tensor, valid: torch.Tensor, features: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Train on detached per-loop losses (B, K), their validity (B, K) and features (B, K, F)."""
        return losses.new_zeros(()), {}

    def needs_readout(self, t: int, cap: int) -> bool:
        """Whether :meth:`decide` must see loop t's predictions (a rule that cannot halt
        before the cap lets the depth loop skip the readout)."""
        return True

    def cut_gradient(self, t: int, rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The state h (n, S, d) entering loop t for batch rows ``rows``; training rules detach it."""
        return h

    def _allowed(self, t: int, n: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((n,), t >= self.cfg.min_loops, dtype=torch.bool, device=like.device)


class FixedHalting(HaltingRule):
    """Every sample runs the cap (``max_loops``, or the override passed to ``step``)."""

    name = "fixed"

    def needs_readout(self, t, cap):
        return t >= cap

    def decide(self, t, cap, out, state):
        return torch.zeros(out.z.shape[0], dtype=torch.bool, device=out.z.device), out.fields()


class ScheduledHalting(HaltingRule):
    """Training depth: sample i halts at loop ``schedule.stop_at[i]``, and gradients do not
    flow into the state entering loop ``detach_at[i] + 1`` (truncated backprop)."""

    name = "scheduled"

    def __init__(self, schedule: Schedule) -> None:
        super().__init__(HaltingConfig(rule="fixed"))
        self.schedule = schedule

    @property
    def cap(self) -> int:
        return int(self.schedule.stop_at.max())

    def cut_gradient(self, t, rows, h):
        if self.schedule.local:
            return h.detach()
        cut = (self.schedule.detach_at[rows] == t - 1)[:, None, None]  # (n, 1, 1)
        return torch.where(cut, h.detach(), h)

    def decide(self, t, cap, out, state):
        return self.schedule.stop_at[state["rows"]] <= t, out.fields()

    def start(self, n, like):
        return {"rows": torch.arange(n, device=like.device)}


class ConvergenceHalting(HaltingRule):
    """Halt when the predicted next observation stops changing between loops.

    The RMS change of the normalised predicted delta must fall below ``tol``. The latent's own
    change is not used: with h starting at 0 it is dominated by the loop's own transient and
    scored AUROC 0.5 against hard transitions in calibration.
    """

    name = "convergence"

    def decide(self, t, cap, out, state):
        rms = out.change.pow(2).mean(-1).sqrt()
        halt = self._allowed(t, rms.shape[0], rms) & (rms < self.cfg.tol) & (t >= 2)
        return halt, out.fields()


class _GateHead(nn.Module):
    """A small MLP from the halting features to one logit per sample."""

    def __init__(self, in_dim: int, hidden: int = 64, bias: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.constant_(self.net[-1].bias, bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def _last_valid(valid: torch.Tensor) -> torch.Tensor:
    """Index of the last valid loop per row; valid is a prefix mask (B, K)."""
    return valid.long().sum(-1).clamp(min=1) - 1


class LearnedHalting(HaltingRule):
    """A head trained on detached per-loop losses.

    ``objective=gain``: the head regresses how much the best later loop lowers this loop's
    error, g = max(0, L_t - min_{s>t} L_s), as log1p(g / eps); halt when the predicted g drops
    below ``tau``. Under a compute budget this spends loops where they buy the most absolute
    error, which puts them on hard transitions (``benchmarks/depth_vs_difficulty.py``).
    ``objective=improve``: the head predicts P(a later loop lowers the error by more than
    ``eps``); halt when it drops below ``tau``. ``objective=ponder``: a PonderNet gate
    lambda_t with a small KL to a geometric prior; halt when lambda_t >= ``tau``.
    """

    name = "learned"
    trainable = True

    def __init__(self, cfg: HaltingConfig, feature_dim: int) -> None:
        super().__init__(cfg)
        self.head = _GateHead(feature_dim)

    def predicted_gain(self, features: torch.Tensor) -> torch.Tensor:
        """``gain`` objective: the predicted error reduction still to come (n,), >= 0."""
        return self.cfg.eps * torch.expm1(self.head(features).clamp_min(0.0))

    def decide(self, t, cap, out, state):
        if self.cfg.objective == "gain":
            halt = self.predicted_gain(out.features) < self.cfg.tau
        else:
            prob = torch.sigmoid(self.head(out.features))
            halt = prob < self.cfg.tau if self.cfg.objective == "improve" else prob >= self.cfg.tau
        return self._allowed(t, halt.shape[0], halt) & halt, out.fields()

    def loss(self, losses, valid, features):
        logits = self.head(features)  # (B, K)
        B, K = losses.shape
        last = _last_valid(valid)
        if self.cfg.objective in ("improve", "gain"):
            masked = losses.masked_fill(~valid, float("inf"))
            # min over strictly later loops: reverse cumulative min, shifted by one
            suffix_min = masked.flip(-1).cummin(-1).values.flip(-1)
            later = torch.cat([suffix_min[:, 1:], suffix_min.new_full((B, 1), float("inf"))], -1)  # (B, K)
            has_later = valid & (torch.arange(K, device=losses.device) < last[:, None])
            if not has_later.any():
                return logits.sum() * 0.0, {}
            if self.cfg.objective == "gain":
                gain = (losses - later).clamp_min(0.0)[has_later]
                # log scale: gains span orders of magnitude between easy and hard rows
                mse = F.mse_loss(logits[has_later], torch.log1p(gain / self.cfg.eps))
                return mse, {"halting/mse": float(mse.detach()), "halting/mean_gain": float(gain.mean())}
            target = (later < losses - self.cfg.eps).float()
            bce = F.binary_cross_entropy_with_logits(logits[has_later], target[has_later])
            return bce, {
                "halting/bce": float(bce.detach()),
                "halting/target_rate": float(target[has_later].mean()),
            }
        lam = torch.sigmoid(logits)
        is_last = torch.arange(K, device=losses.device)[None, :] == last[:, None]
        lam = torch.where(is_last, torch.ones_like(lam), lam) * valid
        survive = torch.cumprod(torch.cat([lam.new_ones(B, 1), 1 - lam[:, :-1]], -1), -1)
        p = lam * survive  # (B, K) halting distribution over the valid loops
        k = torch.arange(K, device=losses.device, dtype=losses.dtype)
        prior = self.cfg.lambda_p * (1 - self.cfg.lambda_p) ** k * valid
        prior = prior / prior.sum(-1, keepdim=True)
        kl = (p * (torch.log(p.clamp_min(1e-9)) - torch.log(prior.clamp_min(1e-9)))).sum(-1)
        expected = (p * losses.masked_fill(~valid, 0.0)).sum(-1)
        loss = (expected + self.cfg.beta * kl).mean()
        return loss, {
            "halting/kl": float(kl.mean().detach()),
            "halting/expected_loss": float(expected.mean().detach()),
        }


class ACTHalting(HaltingRule):
    """Adaptive Computation Time (Graves 2016).

    Halting units h_t accumulate; a sample halts at the first loop where the sum reaches
    ``1 - act_eps``. Its output is the mean field sum_t p_t y_t with p_t = h_t before the halting
    loop and the remainder R on it. Trained on the detached per-loop losses plus
    ``ponder_cost * (N + R)``.
    """

    name = "act"
    trainable = True

    def __init__(self, cfg: HaltingConfig, feature_dim: int) -> None:
        super().__init__(cfg)
        self.head = _GateHead(feature_dim)

    def start(self, n, like):
        return {"cum": like.new_zeros(n)}

    def decide(self, t, cap, out, state):
        h = torch.sigmoid(self.head(out.features))
        cum = state["cum"]
        halt = self._allowed(t, h.shape[0], h) & (cum + h >= 1 - self.cfg.act_eps)
        halt = halt | (t >= cap)
        # the weight is h before the halting loop and the remainder R = 1 - cum on it
        weight = torch.where(halt, 1 - cum, h)
        emitted = {}
        for key, value in out.fields().items():
            w = weight.view(-1, *([1] * (value.dim() - 1)))
            emitted[key] = state.get(f"acc_{key}", torch.zeros_like(value)) + w * value
            state[f"acc_{key}"] = emitted[key]
        state["cum"] = cum + weight
        return halt, emitted

    def loss(self, losses, valid, features):
        h = torch.sigmoid(self.head(features)) * valid  # (B, K)
        K = losses.shape[1]
        last = _last_valid(valid)
        cum = h.cumsum(-1)
        idx = torch.arange(K, device=losses.device)
        reached = (cum >= 1 - self.cfg.act_eps) & valid
        first = torch.where(reached, idx, K).min(-1).values
        N = torch.minimum(first, last)  # halting loop index per row
        before = idx[None, :] < N[:, None]
        R = 1 - (h * before).sum(-1)
        p = h * before + R[:, None] * (idx[None, :] == N[:, None])
        expected = (p * losses.masked_fill(~valid, 0.0)).sum(-1)
        ponder = (N + 1).float() + R  # N treated as constant; gradient through R
        loss = (expected + self.cfg.ponder_cost * ponder).mean()
        return loss, {
            "halting/ponder": float(ponder.mean().detach()),
            "halting/expected_loss": float(expected.mean().detach()),
        }


def make_halting(cfg: HaltingConfig, feature_dim: int) -> HaltingRule:
    """Build the rule named by ``cfg.rule``."""
    if cfg.rule == "fixed":
        return FixedHalting(cfg)
    if cfg.rule == "convergence":
        return ConvergenceHalting(cfg)
    if cfg.rule == "learned":
        return LearnedHalting(cfg, feature_dim)
    if cfg.rule == "act":
        return ACTHalting(cfg, feature_dim)
    raise ValueError(f"unknown halting rule {cfg.rule!r}; expected one of fixed, convergence, learned, act")


def override_rule(
    trained: HaltingRule, trained_cfg: HaltingConfig, halting: str | HaltingConfig | None, feature_dim: int
) -> HaltingRule:
    """The rule a step runs: the trained one (``halting=None``), a rule without trained
    parameters by name (``fixed``, ``convergence``), or a HaltingConfig (new thresholds for the
    trained rule, sharing its head)."""
    if halting is None or halting == trained.name:
        return trained
    if isinstance(halting, HaltingConfig):
        if halting.rule == trained.name:
            rule = copy.copy(trained)  # shares the trained head, not the thresholds
            rule.cfg = halting
            return rule
        if halting.rule in ("fixed", "convergence"):
            return make_halting(halting, feature_dim)
        halting = halting.rule
    if halting not in ("fixed", "convergence"):
        raise ValueError(
            f"halting={halting!r} cannot override the trained rule {trained.name!r}; "
            "expected 'fixed' or 'convergence' (rules without trained parameters)"
        )
    return make_halting(dataclasses.replace(trained_cfg, rule=halting), feature_dim)
