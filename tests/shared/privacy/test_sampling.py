import math

import numpy as np
import torch

from fedxalign.shared.privacy.release import RELEASE_SENSITIVITY, release_prototypes
from fedxalign.shared.privacy.sampling import SubjectPoissonSampler, poisson_rate, window_loader


def test_rate_is_the_loaders_not_batch_over_n():
    """Opacus samples at 1 / ceil(n / B): for 300 windows and B=128 that is 1/3, not 128/300."""
    assert poisson_rate(300, 128) == 1 / 3
    ds = torch.utils.data.TensorDataset(torch.zeros(300, 2), torch.zeros(300, dtype=torch.long))
    loader = window_loader(ds, 128, torch.Generator().manual_seed(0))
    assert loader.sample_rate == 1 / 3 and len(loader) == 3


def test_subject_sampling_takes_at_most_one_window_per_subject():
    subjects = np.repeat(["a", "b", "c", "d", "e", "f"], [50, 80, 60, 100, 70, 90])
    sampler = SubjectPoissonSampler(subjects, 0.5, torch.Generator().manual_seed(0))
    sizes = []
    for _ in range(50):
        for batch in sampler:
            owners = subjects[batch]
            assert len(set(owners)) == len(owners)  # one window per sampled subject
            sizes.append(len(batch))
    assert abs(np.mean(sizes) - 3.0) < 0.3  # 6 subjects x rate 0.5
    assert len(sampler) == 2


def _vector(release, clip):
    """The released quantity before noise, as the ledger's sensitivity argument sees it: (sums / clip, counts)."""
    sums = release.prototypes * release.counts[:, None]
    return np.concatenate([sums.ravel() / clip, release.counts])


def test_one_subject_moves_the_subject_release_by_at_most_its_sensitivity():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200, 8))
    y = rng.integers(0, 4, 200)
    subjects = np.repeat(np.arange(5), 40)
    canary = rng.standard_normal((120, 8)) * 10  # one patient with many windows, far out, in every class
    yc = np.arange(120) % 4
    base = release_prototypes(z, y, 4, 1.0, 1.0, 0.0, subjects=subjects)
    more = release_prototypes(np.vstack([z, canary]), np.concatenate([y, yc]), 4, 1.0, 1.0, 0.0,
                              subjects=np.concatenate([subjects, np.full(120, 99)]))
    move = np.linalg.norm(_vector(more, 1.0) - _vector(base, 1.0))
    assert move <= RELEASE_SENSITIVITY + 1e-6
    windowed = release_prototypes(np.vstack([z, canary]), np.concatenate([y, yc]), 4, 1.0, 1.0, 0.0)
    plain = release_prototypes(z, y, 4, 1.0, 1.0, 0.0)
    assert np.linalg.norm(_vector(windowed, 1.0) - _vector(plain, 1.0)) > 10 * math.sqrt(2)  # per window it is not bounded
