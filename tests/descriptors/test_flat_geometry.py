"""The flat layout's descriptor derivatives: ragged neighbour lists and ``AEV.vjp`` against autograd."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from alenv.datasets import rmd17
from alenv.descriptors.aev import build_neighbours
from alenv.descriptors.representation import Representation


@pytest.fixture(scope="module")
def ragged_batch():
    torch.set_num_threads(1)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    cu.rattle(0.05, seed=2)
    cu.positions[1] += cu.cell.array[0] * 2  # unwrapped: an image far away
    frames = ase.io.read(rmd17("ethanol", "train"), index=":2") + ase.io.read(rmd17("aspirin", "train"), index=":1")
    cu_small = cu[:-3]
    rep = Representation.for_frames(frames + [cu], {"radial_shells": 8, "angular_shells": 4, "angle_sections": 4})
    return rep, frames + [cu, cu_small]


def test_ragged_neighbours_match_frame_by_frame(ragged_batch):
    rep, frames = ragged_batch
    nb = build_neighbours(frames, rep.spec, ragged=True)
    assert nb.ragged and nb.n_total == sum(len(a) for a in frames)
    pos = torch.from_numpy(np.concatenate([a.positions for a in frames])).float()
    G = rep.aev.compute(pos, nb)
    for f, atoms in enumerate(frames):
        one = rep.aev.compute(torch.from_numpy(atoms.positions).float(), build_neighbours([atoms], rep.spec))
        torch.testing.assert_close(G[nb.atom_ptr[f] : nb.atom_ptr[f + 1]], one, rtol=0, atol=1e-6)
    flat = rep.featurize(frames, layout="flat")
    stored = flat.neighbours(np.arange(len(frames)))
    assert np.array_equal(stored.pair_i, nb.pair_i) and np.array_equal(stored.triplet_b, nb.triplet_b)
    np.testing.assert_allclose(stored.pair_shift, nb.pair_shift, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="same number of atoms"):
        build_neighbours(frames, rep.spec)


@pytest.mark.parametrize("lead", [(), (3,), (2, 2)])
def test_vjp_equals_autograd(ragged_batch, lead):
    rep, frames = ragged_batch
    flat = rep.featurize(frames, layout="flat")
    idx = np.arange(len(frames))
    nb = flat.neighbours(idx)
    pos = torch.from_numpy(flat.frame_positions(idx)).float().requires_grad_(True)
    G = rep.aev.compute(pos, nb)
    geo = rep.aev.geometry(pos, nb)
    assert torch.equal(geo.G, G.detach())
    g = torch.randn(*lead, *G.shape, generator=torch.Generator().manual_seed(0))
    if lead:
        want = torch.autograd.grad(G, pos, g.reshape(-1, *G.shape), is_grads_batched=True)[0].reshape(*lead, -1, 3)
    else:
        want = torch.autograd.grad(G, pos, g)[0]
    got = rep.aev.vjp(geo, g)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_vjp_is_differentiable_in_its_weights(ragged_batch):
    """Training differentiates forces by the network weights through dE/dG: vjp is linear in it."""
    rep, frames = ragged_batch
    flat = rep.featurize(frames[:3], layout="flat")
    nb = flat.neighbours(np.arange(3))
    geo = rep.aev.geometry(torch.from_numpy(flat.frame_positions(np.arange(3))).float(), nb)
    g = torch.randn(geo.G.shape, dtype=torch.float64).float().requires_grad_(True)
    a = torch.randn(())
    out = rep.aev.vjp(geo, a * g)
    (grad,) = torch.autograd.grad(out.sum(), g)
    (grad1,) = torch.autograd.grad(rep.aev.vjp(geo, g).sum(), g)
    torch.testing.assert_close(grad, a * grad1, rtol=1e-5, atol=1e-6)
