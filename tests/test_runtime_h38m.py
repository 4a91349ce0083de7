"""Deterministic training without loading torch's compiler (hunt 38m).

``weakstil.runtime.Deterministic`` (every MIL training) called ``torch.use_deterministic_algorithms``, which
imports ``torch._inductor.config`` to set a flag only ``torch.compile`` reads: 1.1 s of CPU in every `weakstil
train` process and workflow train job (a 2-fold, 2-epoch train of 3 slides: 6.2-6.4 s user CPU, now 5.3-5.6 s,
the same model files byte for byte). The same torch flags are set and restored; the compiler's flag too where
the compiler is loaded already."""

from __future__ import annotations

import sys
import types


def test_deterministic_sets_and_restores_torchs_flags_without_importing_the_compiler(monkeypatch):
    import torch

    from weakstil.runtime import Deterministic

    monkeypatch.delitem(sys.modules, "torch._inductor.config", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    with Deterministic():
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        # old: imported here (1.1 s of CPU a process)
        assert "torch._inductor.config" not in sys.modules
    assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
        == before

    loaded = types.SimpleNamespace(deterministic=False)  # a process that loaded the compiler: its flag follows
    monkeypatch.setitem(sys.modules, "torch._inductor.config", loaded)
    with Deterministic():
        assert loaded.deterministic is True
    assert loaded.deterministic is False
