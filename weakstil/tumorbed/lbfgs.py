"""One step of ``torch.optim.LBFGS(params, lr, max_iter, line_search_fn="strong_wolfe")`` on a fresh
optimiser, without the optimiser class: the tumour-evidence classifier's fit (weakstil.tumorbed.evidence).

The class's first use in a process imports ``torch._dynamo`` (its methods are wrapped to keep the
compiler out), about 2 s of CPU that ``weakstil tumorbed train`` paid for a fit of well under a
second. This is the same algorithm, operation for operation (torch 2.14's ``LBFGS.step``, BSD
licence, with its own strong-Wolfe line search, ``torch.optim.lbfgs._strong_wolfe``), so the same
weights to the bit: ``tests/test_tumorbed_lbfgs.py`` compares the two.
"""

from __future__ import annotations

from typing import Callable


def lbfgs_step(params: list, closure: Callable, *, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
               tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100):
    """``LBFGS(params, ...).step(closure)`` with the strong-Wolfe line search, for real dense tensors
    (``params``, with ``requires_grad``) on one device. ``closure`` clears the gradients (sets them to
    None, as ``Optimizer.zero_grad`` does), evaluates the loss, calls ``backward`` and returns the loss.
    Returns the first loss, as ``step`` does."""
    import torch
    from torch.optim.lbfgs import _strong_wolfe

    if max_eval is None:
        max_eval = max_iter * 5 // 4

    def evaluate():
        with torch.enable_grad():
            return closure()

    def flat_grad():
        return torch.cat([p.new(p.numel()).zero_() if p.grad is None else p.grad.view(-1) for p in params], 0)

    def add_grad(step_size, update) -> None:
        offset = 0
        for p in params:
            numel = p.numel()
            p.add_(update[offset:offset + numel].view_as(p), alpha=step_size)
            offset += numel

    def directional_evaluate(x, t, d):
        add_grad(t, d)
        loss = float(evaluate())
        grad = flat_grad()
        for p, pdata in zip(params, x):
            p.copy_(pdata)
        return loss, grad

    with torch.no_grad():
        orig_loss = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        grad = flat_grad()
        if grad.abs().max() <= tolerance_grad:
            return orig_loss
        d = t = prev_flat_grad = None
        old_dirs, old_stps, ro, h_diag = [], [], [], 1
        al = [None] * history_size
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            if n_iter == 1:
                d = grad.neg()
            else:
                y = grad.sub(prev_flat_grad)
                s = d.mul(t)
                ys = y.dot(s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / y.dot(y)
                num_old = len(old_dirs)
                q = grad.neg()
                for i in range(num_old - 1, -1, -1):
                    al[i] = old_stps[i].dot(q) * ro[i]
                    q.add_(old_dirs[i], alpha=-al[i])
                d = r = torch.mul(q, h_diag)
                for i in range(num_old):
                    be_i = old_dirs[i].dot(r) * ro[i]
                    r.add_(old_stps[i], alpha=al[i] - be_i)
            if prev_flat_grad is None:
                prev_flat_grad = grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(grad)
            prev_loss = loss
            t = min(1.0, 1.0 / grad.abs().sum()) * lr if n_iter == 1 else lr
            gtd = grad.dot(d)
            if gtd > -tolerance_change:
                break
            x_init = [p.clone(memory_format=torch.contiguous_format) for p in params]
            loss, grad, t, ls_func_evals = _strong_wolfe(directional_evaluate, x_init, t, d, loss, grad, gtd,
                                                         max_ls=max_eval - current_evals)
            add_grad(t, d)
            opt_cond = grad.abs().max() <= tolerance_grad
            current_evals += ls_func_evals
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if d.mul(t).abs().max() <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
                break
    return orig_loss
