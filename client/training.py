"""A site's local training: DP-SGD (Opacus) toward the class anchors, stopped by the site's own ledger."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader

from fedxalign.shared.device import model_device, pick_device
from fedxalign.shared.errors import ConfigError, check_option
from fedxalign.shared.train_config import TrainConfig
from fedxalign.shared.losses import orthogonality, prototype_loss
from fedxalign.shared.data.site import WindowDataset
from fedxalign.shared.models.encoder import CrissCrossEncoder, WindowInputs, set_trainable
from fedxalign.shared.models.pretraining import PretrainConfig, dual_mask, reconstruction_loss, set_pretrainable
from fedxalign.shared.models.window_inputs import for_windows, split_batch
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import PrivacyLedger, calibrate_noise
from fedxalign.shared.privacy.randomness import secure_torch_generator
from fedxalign.shared.privacy.release import effective_release_sigma
from fedxalign.shared.privacy.sampling import subject_loader, window_loader

log = logging.getLogger(__name__)

OBJECTIVES = ("prototypes", "reconstruction")
MASK = PretrainConfig()  # federated pretraining masks as the public pretraining does

ExtraLoss = Callable[[CrissCrossEncoder, torch.Tensor], torch.Tensor]
BatchLoss = Callable[[torch.nn.Module, list[torch.Tensor]], torch.Tensor]  # (private module, batch tensors, labels last)


@dataclass(frozen=True)
class TrainReport:
    steps: int
    mean_loss: float
    first_epoch_loss: float
    last_epoch_loss: float
    stopped_by_budget: bool
    noise_multiplier: float | None
    epsilon: float


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr_scales: Mapping[str, float] | None = None) -> torch.optim.Optimizer:
    """SGD with momentum by default: under DP noise, Adam's per-coordinate scaling amplifies the noise.

    `lr_scales` maps a parameter-name prefix to a factor on `cfg.lr` for that part (one parameter
    group each); the rest trains at `cfg.lr`.
    """
    check_option("optimizer", cfg.optimizer, ("sgd", "adam"))
    scales = dict(lr_scales or {})
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
            groups.setdefault(cfg.lr * scale, []).append(p)
    params = [{"params": ps, "lr": lr} for lr, ps in groups.items()]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def project(z: torch.Tensor, head: torch.Tensor | None) -> torch.Tensor:
    """Apply the server's alignment head (d x d) for this modality, then renormalise."""
    return z if head is None else torch.nn.functional.normalize(z @ head.T, dim=-1)


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, anchors: torch.Tensor, present: torch.Tensor,
          head: torch.Tensor | None, cfg: TrainConfig, inputs: WindowInputs | None = None) -> torch.Tensor:
    z, spec, _ = model(x, return_features=True, inputs=inputs)
    loss = prototype_loss(project(z, head), y, anchors, cfg.tau, present, cfg.pull_weight)
    if spec is not None:  # per-sample term: safe under DP-SGD's per-sample clipping
        loss = loss + cfg.orth_weight * orthogonality(z, spec)
    return loss


def dp_train(model: torch.nn.Module, dataset: torch.utils.data.Dataset, anchors: torch.Tensor, present: torch.Tensor,
             train_cfg: TrainConfig, privacy_cfg: PrivacyConfig, ledger: PrivacyLedger,
             head: torch.Tensor | None = None, extra_loss: ExtraLoss | None = None, round_no: int = 0,
             generator: torch.Generator | None = None, objective: str = "prototypes",
             batch_loss: BatchLoss | None = None, release_sigma: float | None = None,
             lr_scales: Mapping[str, float] | None = None) -> TrainReport:
    """Train `model` in place for `local_epochs`, or fewer steps if the budget runs out.

    With DP on: Poisson sampling of the privacy unit (windows, or patients with one window
    each) at rate 1 / ceil(units / batch_size), drawn with a generator seeded from the OS; per-sample
    clipping at max_grad_norm; noise from the same secure generator, its multiplier calibrated
    once (stored in the ledger) so that `planned_rounds` rounds of local steps and prototype
    releases fit the budget. Each step is recorded in the ledger, with the loader's own sample
    rate, before it is taken; training stops early (stopped_by_budget) when the next step would
    leave no room for this round's prototype release. `generator` fixes sampling and noise (tests
    only); by default each call draws a fresh one seeded from the OS. `objective="reconstruction"`
    trains the encoder by dual-masked reconstruction instead (federated pretraining: same
    sampling, clipping, noise and ledger; labels unused). `batch_loss` replaces the encoder
    objectives for another model (a paired site's two encoders and fusion head; the caller sets
    what is trainable), `release_sigma` the effective noise of the round's release it reserves, and
    `lr_scales` a learning-rate factor per parameter-name prefix (`make_optimizer`).
    """
    n = len(dataset)
    if n == 0:
        raise ConfigError("the site has no training windows")
    check_option("objective", objective, OBJECTIVES)
    if batch_loss is None and objective == "prototypes" and isinstance(dataset, WindowDataset):
        dataset = for_windows(dataset, model)  # once, not once per epoch
    if batch_loss is None and objective == "reconstruction":
        set_pretrainable(model)
    elif batch_loss is None:
        set_trainable(model, train_cfg.trainable, train_cfg.top_layers)
    device = pick_device(train_cfg.device)
    model.to(device)
    optimizer = make_optimizer(model, train_cfg, lr_scales)
    sigma = None
    budget_steps = math.inf
    if release_sigma is None:
        release_sigma = effective_release_sigma(privacy_cfg.proto_noise_multiplier)
    model.train()  # Opacus validates the module in training mode
    if privacy_cfg.enabled:
        gen = generator if generator is not None else secure_torch_generator()  # sampling: on the CPU, with the data
        noise_gen = gen if device.type == "cpu" else secure_torch_generator(device)  # noise: where the gradients are
        if privacy_cfg.unit == "subject":
            loader = subject_loader(dataset, dataset.subject, train_cfg.batch_size, gen)
        else:
            loader = window_loader(dataset, train_cfg.batch_size, gen)
        q = float(loader.sample_rate)
        if ledger.noise_multiplier is None:
            ledger.set_noise_multiplier(calibrate_noise(ledger, q, len(loader) * train_cfg.local_epochs,
                                                        train_cfg.planned_rounds, release_sigma))
        sigma = float(ledger.noise_multiplier)
        budget_steps = ledger.affordable_steps(sigma, q, reserve=[(release_sigma, 1.0, 1)])
    else:
        # No DP: the same per-sample clipping and averaging, without noise or accounting, so that the
        # two runs differ by the noise alone. (Clipping the batch gradient instead lets steps grow up to
        # ten times larger than DP-SGD's mean of clipped gradients; at the same learning rate that
        # collapsed EEG embeddings onto one point.) The sampling seed protects nothing: runs repeat.
        gen = torch.Generator().manual_seed(train_cfg.seed)
        noise_gen = None
        loader = DataLoader(dataset, batch_size=min(train_cfg.batch_size, n), shuffle=True, generator=gen)
        q = 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")  # we pass our own OS-seeded generator
        engine = PrivacyEngine(accountant=privacy_cfg.accountant)
        trainable, optimizer, _ = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma if sigma is not None else 0.0,
            max_grad_norm=privacy_cfg.max_grad_norm, poisson_sampling=False, noise_generator=noise_gen,
        )
    if privacy_cfg.enabled and privacy_cfg.unit == "subject":
        optimizer.expected_batch_size = loader.expected_batch_size  # Opacus would size the mean by windows, not patients
    logging.getLogger("flwr").setLevel(logging.INFO)  # Opacus switches it to DEBUG
    anchors, present = anchors.detach().to(device), present.to(device)
    head = head.to(device) if head is not None else None
    steps, losses, epoch_means = 0, [], []
    stopped = False
    for _ in range(train_cfg.local_epochs):
        epoch_losses = []
        for batch in loader:
            if steps >= budget_steps:
                stopped = True
                break
            if len(batch[-1]) == 0:  # Poisson sampling can draw an empty batch: still a step, and still a noisy update
                if sigma is not None:
                    ledger.record("dp_sgd_step", sigma, q, round_no=round_no)
                    _noise_only_step(trainable, optimizer)
                steps += 1
                continue
            optimizer.zero_grad()
            batch = [b.to(device, non_blocking=True) for b in batch]
            (x,), (inputs,), y = split_batch(batch, 1) if batch_loss is None else (batch[:1], [None], batch[-1])
            if batch_loss is not None:
                loss = batch_loss(trainable, batch)
            elif objective == "reconstruction":  # the masks need no secrecy; they come from the same generator anyway
                mask = dual_mask(*x.shape[:3], MASK.mask_ratio, MASK.span_patches, gen, device)
                loss = reconstruction_loss(trainable, x, mask)
            else:
                loss = _loss(trainable, x, y, anchors, present, head, train_cfg, inputs)
            if extra_loss is not None:
                loss = loss + extra_loss(trainable, x)
            with warnings.catch_warnings():  # inputs need no grad; Opacus' hooks fire on module outputs
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            if sigma is not None:
                ledger.record("dp_sgd_step", sigma, q, round_no=round_no)  # written before the noisy update is taken
            optimizer.step()
            steps += 1
            epoch_losses.append(float(loss.detach()))
        if epoch_losses:
            epoch_means.append(float(np.mean(epoch_losses)))
            losses += epoch_losses
        if stopped:
            log.warning("privacy budget reached after %d step(s): epsilon %.3f of %g", steps, ledger.epsilon(), privacy_cfg.epsilon)
            break
    trainable.remove_hooks()  # give the plain module back to the caller
    ledger.save()
    model.eval()
    model.to("cpu")  # what the site saves and sends lives on the CPU
    return TrainReport(
        steps=steps, mean_loss=float(np.mean(losses)) if losses else float("nan"),
        first_epoch_loss=epoch_means[0] if epoch_means else float("nan"),
        last_epoch_loss=epoch_means[-1] if epoch_means else float("nan"),
        stopped_by_budget=stopped, noise_multiplier=sigma, epsilon=ledger.epsilon(),
    )


def _noise_only_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """The DP-SGD update of an empty batch: zero per-sample gradients, so the update is the Gaussian noise alone.

    Skipping the update instead would make the model depend on whether the batch was empty,
    which is not the mechanism the accountant analyses.
    """
    optimizer.zero_grad()
    for p in module.parameters():
        if p.requires_grad:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
    optimizer.step()


@torch.no_grad()
def embed(model: CrissCrossEncoder, x: torch.Tensor, head: torch.Tensor | None = None, batch: int = 256) -> np.ndarray:
    """Unit embeddings (n, d) in the shared space, in eval mode, computed on the model's device."""
    model.eval()
    device = model_device(model)
    head = head.to(device) if head is not None else None
    out = [project(model(x[i : i + batch].to(device)), head).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.n_outputs), np.float32)
