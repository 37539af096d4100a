"""Every objective used under DP-SGD depends on one sample only: per-sample clipping then bounds each sample."""

import torch
from opacus import GradSampleModule

from fedxalign.client.training import TrainConfig, _loss
from fedxalign.shared.losses import orthogonality
from fedxalign.shared.models.encoder import EncoderConfig, build_encoder


def per_sample_grads(model, x, y, anchors, present):
    gsm = GradSampleModule(model)
    gsm.zero_grad()
    for p in gsm.parameters():
        p.grad_sample = None
    _loss(gsm, x, y, anchors, present, None, TrainConfig(orth_weight=1.0)).backward()
    return {n: p.grad_sample[0].clone() for n, p in gsm.named_parameters() if p.grad_sample is not None}


def test_sample_is_gradient_does_not_change_when_sample_j_changes():
    cfg = EncoderConfig(d_model=16, n_heads=2, n_layers=1, embed_dim=8, specific_dim=8, dropout=0.0)
    anchors = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    present = torch.ones(5, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 30, 100, generator=gen)
    y = torch.tensor([0, 2, 4])
    x2, y2 = x.clone(), y.clone()
    x2[1], y2[1] = torch.randn(2, 30, 100, generator=gen), 3  # sample j=1 replaced; sample i=0 untouched
    a = per_sample_grads(build_encoder(cfg, seed=0).train(), x, y, anchors, present)
    b = per_sample_grads(build_encoder(cfg, seed=0).train(), x2, y2, anchors, present)
    assert a.keys() == b.keys() and len(a) > 5
    for name in a:  # scaled by the batch size under mean reduction, which is unchanged
        assert torch.allclose(a[name], b[name], atol=1e-5), name


def test_misa_batch_form_would_couple_samples():
    """The batch form ||inv^T spec||_F^2 mixes samples; the per-sample form does not."""
    inv, spec = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    orthogonality(inv, spec).backward()
    per_sample = inv.grad.clone()
    inv.grad = None
    spec2 = spec.clone()
    spec2[3] = torch.randn(8)
    orthogonality(inv, spec2).backward()
    assert torch.allclose(per_sample[0], inv.grad[0])
    inv.grad = None
    ((inv.T @ spec).pow(2).sum() / 16).backward()
    batch_form = inv.grad.clone()
    inv.grad = None
    ((inv.T @ spec2).pow(2).sum() / 16).backward()
    assert not torch.allclose(batch_form[0], inv.grad[0])


def _pair_grads(za, zb, y, loss_fn):
    za, zb = za.clone().requires_grad_(True), zb.clone().requires_grad_(True)
    loss_fn(za, zb, y).backward()
    return za.grad[0].clone(), zb.grad[0].clone()


def test_paired_contrastive_gradient_of_a_pair_ignores_the_other_pairs():
    from fedxalign.shared.losses import info_nce, paired_contrastive

    g = torch.Generator().manual_seed(0)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    anchors_a, anchors_b = unit(5, 8), unit(5, 8)
    za, zb, y = unit(6, 8), unit(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    za2, zb2 = za.clone(), zb.clone()
    za2[1:], zb2[1:] = unit(5, 8), unit(5, 8)  # every other pair replaced
    ours = lambda a, b, lab: paired_contrastive(a, b, lab, anchors_a, anchors_b, 0.1) * len(a)  # noqa: E731 - sum over pairs
    for first, second in zip(_pair_grads(za, zb, y, ours), _pair_grads(za2, zb2, y, ours)):
        torch.testing.assert_close(first, second)
    clip = lambda a, b, lab: info_nce(a, b, 0.1) * len(a)  # noqa: E731 - in-batch negatives: the pair's gradient moves
    assert not torch.allclose(_pair_grads(za, zb, y, clip)[0], _pair_grads(za2, zb2, y, clip)[0])


def test_patch_contrastive_gradient_of_a_pair_ignores_the_other_pairs():
    from fedxalign.shared.losses import patch_contrastive

    g = torch.Generator().manual_seed(1)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    sa, sb, y = unit(5, 6, 8), unit(5, 6, 8), torch.zeros(5, dtype=torch.long)
    sa2, sb2 = sa.clone(), sb.clone()
    sa2[1:], sb2[1:] = unit(4, 6, 8), unit(4, 6, 8)  # every other pair replaced
    ours = lambda a, b, lab: patch_contrastive(a, b, 0.1) * len(a)  # noqa: E731 - sum over pairs
    first, second = _pair_grads(sa, sb, y, ours), _pair_grads(sa2, sb2, y, ours)
    assert first[0].abs().sum() > 0
    for one, other in zip(first, second):
        torch.testing.assert_close(one, other)


def test_patch_contrastive_rewards_spans_that_meet_in_time():
    from fedxalign.shared.losses import patch_contrastive

    spans = torch.nn.functional.normalize(torch.randn(3, 6, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    aligned = patch_contrastive(spans, spans, 0.1)
    shifted = patch_contrastive(spans, spans.roll(1, dims=1), 0.1)  # the same spans, one span late
    assert aligned < 0.1 < shifted
    swapped = spans.flip(1)  # time reversed in both modalities: still each span against its own
    torch.testing.assert_close(patch_contrastive(swapped, swapped, 0.1), aligned)


def test_paired_contrastive_leaves_out_the_pairs_own_class_anchor_and_absent_classes():
    from fedxalign.shared.losses import paired_contrastive

    z = torch.nn.functional.normalize(torch.ones(1, 4), dim=-1)
    anchors = torch.eye(4)
    y = torch.tensor([2])
    base = paired_contrastive(z, z, y, anchors, anchors, 0.5)
    moved = anchors.clone()
    moved[2] = z[0]  # the own class's anchor equal to the embedding: not a negative, so no change
    assert torch.allclose(base, paired_contrastive(z, z, y, moved, moved, 0.5))
    absent = torch.tensor([True, False, True, True])
    assert paired_contrastive(z, z, y, anchors, anchors, 0.5, absent) < base  # one negative fewer
