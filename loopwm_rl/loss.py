"""The world-model training loss (``LOOPWM_SPEC.md`` §4).

Per sequence, one loop count T ~ Poisson(mu_rec) is drawn and shared by its H steps; gradients
flow through the last ``mu_bwd`` loops only. Every loop in that window is supervised, so every
loop's prediction is usable at test time. Terms: next-observation delta (MSE, normalised),
reward (MSE, normalised), continuation (BCE) and latent consistency of the predicted features
to the stop-gradient encoding of the next observation. The halting
rule is trained on the detached per-loop losses.

A model with memory gets sequences of ``burn_in + H`` transitions: the first ``burn_in`` are
only filtered by ``observe`` (gradients flow through them, truncated at the sequence start), and
each row restarts its memory at a random step of that prefix, so the loss on the last H steps
covers histories of every length from 0 to ``burn_in``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .batch import SequenceBatch
from .memory import filter_prefix

if TYPE_CHECKING:
    from .world_model import WorldModel


def loop_weights(cfg, K: int, like: torch.Tensor) -> torch.Tensor:
    """Supervision weight of loops 1..K (K,): ``t ** loop_weight_power``, loop 1 raised to
    ``first_loop_weight`` times the last loop's."""
    w = torch.arange(1, K + 1, dtype=like.dtype, device=like.device) ** cfg.loop_weight_power
    if cfg.first_loop_weight > 0:
        w[0] = torch.clamp_min(cfg.first_loop_weight * w[-1], 1.0)
    return w


def sequence_loss(
    model: WorldModel, batch: SequenceBatch, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    cfg = model.cfg
    z0, batch = _burn_in(model, batch, generator)
    H, B = batch.horizon, batch.batch_size
    obs = batch.obs  # (H + 1, B, O)
    alive = batch.alive()  # (H, B)
    step_w = cfg.rho ** torch.arange(H, dtype=obs.dtype, device=obs.device)[:, None] * alive

    schedule = model.train_schedule(B, generator)
    if cfg.input_noise > 0:  # GNS: a noisy input whose target still lands on the true next state
        noise = torch.randn(obs[0].shape, generator=generator, device=obs.device) * cfg.input_noise
        obs = torch.cat([(obs[0] + noise * model.obs_scale)[None], obs[1:]])
        z0 = torch.cat([z0[:, : cfg.obs_dim] + noise, z0[:, cfg.obs_dim :]], -1)  # noise in normalised units
    rollout = model.imagine(z0, batch.actions, schedule=schedule, keep_loops=True)

    target_delta = model.normalize_delta(obs[:-1], obs[1:])  # (H, B, O)
    target_reward = model.normalize_reward(batch.rewards)  # (H, B)
    target_cont = 1.0 - batch.terminated.float()  # (H, B)

    decoded = _decoded_steps(model, H)  # (H,) bool: the steps the world-model loss supervises
    inputs = torch.cat([z0[None], rollout.z[:-1]])  # (H, B, S): the latent each step started from
    wm_terms, distill_terms, losses, valids, feats = [], [], [], [], []
    K = rollout.per_loop[0].valid.shape[0]
    loop_w = loop_weights(cfg, K, obs)  # (K,)
    loop_index = torch.arange(1, K + 1, device=obs.device)[:, None]  # (K, 1)
    for k, pl in enumerate(rollout.per_loop):
        target = target_delta[k]  # (B, O)
        if cfg.decode_every > 1:  # deferred: land the carried estimate on o_(k+1), drift included
            drift = (inputs[k, :, : cfg.obs_dim] - model.normalize_obs(obs[k])) * (model.obs_scale / model.delta_scale)
            target = target - drift
        mse_obs = (pl.delta - target).pow(2).mean(-1)  # (K, B)
        mse_rew = (pl.reward - target_reward[k]).pow(2)  # (K, B)
        bce = F.binary_cross_entropy_with_logits(
            pl.cont_logit, target_cont[k].expand_as(pl.cont_logit), reduction="none"
        )
        per_loop = cfg.w_obs * mse_obs + cfg.w_reward * mse_rew + cfg.w_cont * bce  # (K, B)
        sup = model.supervised(pl.valid, schedule).float() * loop_w[:, None] * step_w[k]  # (K, B)
        if decoded[k]:
            wm_terms.append((per_loop * sup).sum() / sup.sum().clamp_min(1.0))
        if cfg.w_distill > 0:  # the last loop teaches the earlier ones (self-distillation)
            early = sup.ne(0) & (loop_index < schedule.stop_at[None, :])  # (K, B)
            gap = (pl.delta - rollout.delta[k].detach()).pow(2).mean(-1)  # (K, B)
            distill_terms.append((gap * early).sum() / early.sum().clamp_min(1) * step_w[k].mean())
        # the halting rule learns from prediction error only (obs + reward)
        losses.append((mse_obs + mse_rew).detach().T)  # (B, K)
        valids.append(pl.valid.T)
        feats.append(pl.features.transpose(0, 1))  # (B, K, F)

    wm_loss = torch.stack(wm_terms).sum() / step_w[decoded].sum(0).mean().clamp_min(1e-6)
    with torch.no_grad():
        z_target = model.encoder(model.normalize_obs(obs[1:]))  # (H, B, D)
    features = rollout.z[..., cfg.obs_dim : cfg.obs_dim + cfg.latent_dim]  # (H, B, D)
    consistency = ((features - z_target).pow(2).mean(-1) * step_w).sum() / step_w.sum()

    # the halting head learns where inference starts, from h = 0, unless no row did
    rows = schedule.zero_start()  # (B,)
    rows = rows.repeat(H) if rows.any() else torch.ones(H * B, dtype=torch.bool, device=obs.device)  # (H * B,)
    halt_loss, halt_metrics = model.halting.loss(
        torch.cat(losses)[rows], torch.cat(valids)[rows], torch.cat(feats)[rows]
    )
    total = wm_loss + cfg.w_consistency * consistency + halt_loss
    contraction = torch.zeros(())
    if cfg.contraction_budget > 0:  # LoopWM-DD's hinge on how far the features move per rollout
        path = torch.cat([z0[None], rollout.z])[..., cfg.obs_dim : cfg.obs_dim + cfg.latent_dim]  # (H + 1, B, D)
        moved = (path[1:] - path[:-1]).norm(dim=-1).sum(0)  # (B,)
        contraction = F.relu(moved - H * cfg.contraction_budget).mean()
        total = total + cfg.w_contraction * contraction
    if distill_terms:
        total = total + cfg.w_distill * torch.stack(distill_terms).sum() / step_w.sum(0).mean().clamp_min(1e-6)

    with torch.no_grad():
        final_err = (rollout.delta - target_delta).pow(2).mean(-1)  # (H, B)
        metrics = {
            "train/loss": float(total),
            "train/wm_loss": float(wm_loss),
            "train/consistency": float(consistency),
            "train/contraction_hinge": float(contraction),
            "train/decoded_steps": float(decoded.sum()),
            "train/halting_loss": float(halt_loss),
            "train/obs_mse": float((final_err * alive).sum() / alive.sum()),
            "train/loops_mean": float(schedule.stop_at.float().mean()),
            "depth/retention_max": float(model.retention().max()),
            **{k.replace("halting/", "train/halting_"): v for k, v in halt_metrics.items()},
        }
    return total, metrics


def _decoded_steps(model: WorldModel, H: int) -> torch.Tensor:
    """(H,) bool: every ``decode_every``-th step and the last one (all of them for 1). With a
    curriculum the interval grows by one every ``decode_curriculum`` training calls."""
    every = model.cfg.decode_every
    if model.cfg.decode_curriculum > 0:
        every = min(every, 1 + model.loss_calls // model.cfg.decode_curriculum)
    if model.training:
        model.loss_calls += 1
    k = torch.arange(1, H + 1)
    return (k % every == 0) | (k == H)


def _burn_in(
    model: WorldModel, batch: SequenceBatch, generator: torch.Generator | None
) -> tuple[torch.Tensor, SequenceBatch]:
    """The latent the loss's rollout starts from (B, S) and the batch's last H transitions.
    Without memory: ``encode`` of the first observation and the whole batch."""
    n = model.cfg.sequence_burn_in
    if n == 0:
        return model.encode(batch.obs[0]), batch
    if batch.horizon <= n:
        raise ValueError(
            f"a model with memory needs sequences of burn_in + horizon transitions; got {batch.horizon} "
            f"for burn_in={n} (samplers add model.burn_in to the horizon)"
        )
    B = batch.batch_size
    # row b's memory starts at step restart[b] of the prefix (n: no history at all), never on
    # the padding before its episode's start
    first = torch.zeros(B, dtype=torch.long) if batch.first is None else batch.first.cpu()
    restart = first + (torch.rand(B, generator=generator) * (n + 1 - first)).long()  # (B,) in [first, n]
    z = filter_prefix(model, batch.obs, batch.actions, n, restart.to(batch.obs.device))
    rest = SequenceBatch(batch.obs[n:], batch.actions[n:], batch.rewards[n:], batch.terminated[n:])
    return z, rest
