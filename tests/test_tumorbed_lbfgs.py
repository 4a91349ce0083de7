"""The tumour-evidence fit's L-BFGS (weakstil.tumorbed.lbfgs) is torch.optim.LBFGS's step without the
class: the same weights to the bit, so detectors trained before and after it are the same bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _problem(seed: int, n: int, d: int, l2: float):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32))
    y = torch.from_numpy((rng.random(n) < 0.3).astype(np.float32))
    if seed % 2:
        x[:, 0] += 3 * y  # separable along one direction: the weights run on until max_iter
    w, b = torch.zeros(d, requires_grad=True), torch.zeros(1, requires_grad=True)

    def loss():
        z = x @ w + b
        out = torch.nn.functional.binary_cross_entropy_with_logits(z, y) + l2 * (w * w).sum()
        out.backward()
        return out
    return w, b, loss


@pytest.mark.parametrize("seed,n,d,l2,max_iter", [(0, 200, 8, 1e-2, 200), (1, 150, 5, 1e-6, 200), (2, 60, 30, 1e-3, 7),
                                                  (3, 300, 3, 0.0, 200), (4, 40, 70, 1e-1, 200)])
def test_the_step_is_torchs_to_the_bit(seed, n, d, l2, max_iter):
    from weakstil.tumorbed.lbfgs import lbfgs_step

    w1, b1, f1 = _problem(seed, n, d, l2)
    opt = torch.optim.LBFGS([w1, b1], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure1():
        opt.zero_grad()
        return f1()
    first1 = opt.step(closure1)
    w2, b2, f2 = _problem(seed, n, d, l2)

    def closure2():
        w2.grad = b2.grad = None
        return f2()
    first2 = lbfgs_step([w2, b2], closure2, lr=1.0, max_iter=max_iter)
    assert torch.equal(first1, first2)
    assert torch.equal(w1, w2) and torch.equal(b1, b2)
    assert not torch.equal(w2, torch.zeros_like(w2))  # it moved
    assert opt.state[w1]["func_evals"] > 2  # a line search with several evaluations, not one step


def test_a_gradient_already_small_enough_stops_at_once():
    from weakstil.tumorbed.lbfgs import lbfgs_step

    w = torch.zeros(3, requires_grad=True)

    def closure():
        w.grad = None
        out = (w * w).sum()
        out.backward()
        return out
    assert float(lbfgs_step([w], closure, max_iter=50).detach()) == 0.0 and torch.equal(w, torch.zeros(3))
