"""Where every DP draw gets its randomness: generators seeded afresh from the OS's CSPRNG, never from a known seed.

Opacus's `secure_mode` needs `torchcsprng`, which has no wheel for current torch, so a site
instead seeds a dedicated generator with 128 bits (numpy) or 63 bits (torch) from `secrets`
for every round's DP-SGD noise, Poisson sampling and prototype release. Nothing the coordinator
knows or sends (site name, round number, run config) enters the seed, so it cannot rebuild
the noise. The streams themselves are PCG64 / Mersenne Twister, not cryptographic; the seed
is what an attacker would have to guess. Seeds for model initialisation and the data split
stay reproducible and live elsewhere: they protect nothing.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch


def secure_numpy_rng() -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(secrets.randbits(128)))


def secure_torch_generator(device: str | torch.device = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(secrets.randbits(63))
    return gen
