"""Activation checkpointing of DynUNet's top blocks: the same numbers, fewer saved activations."""

from __future__ import annotations

import copy

import torch

from medsight.models.registry import build_model

OPTIONS = {"strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "kernel_size": [[3, 3, 3]] * 3,
           "filters": [8, 16, 32], "deep_supervision": True}


def _pair():
    torch.manual_seed(0)
    plain = build_model("dynunet", 1, 2, 3, **OPTIONS)
    recomputed = build_model("dynunet", 1, 2, 3, **OPTIONS, recompute_top=True)
    recomputed.load_state_dict(plain.state_dict())
    return plain, recomputed


def _saved_bytes(model, x) -> tuple[torch.Tensor, int]:
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, sum(storages.values())


def test_recomputed_top_blocks_give_the_same_loss_and_gradients_and_keep_fewer_activations():
    plain, recomputed = _pair()
    x = torch.randn(2, 1, 32, 32, 32)
    out_plain, saved_plain = _saved_bytes(plain.train(), x)
    out_re, saved_re = _saved_bytes(recomputed.train(), x)
    torch.testing.assert_close(out_re, out_plain)
    out_plain.square().mean().backward()
    out_re.square().mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), recomputed.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
    # the two full-resolution blocks hold most of a U-Net's activations
    assert saved_re < 0.6 * saved_plain, (saved_re, saved_plain)


def test_recomputation_leaves_inference_keys_and_copies_alone():
    plain, recomputed = _pair()
    assert list(recomputed.state_dict()) == list(plain.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(recomputed.eval()(x), plain.eval()(x))
        twin = copy.deepcopy(recomputed)
        torch.testing.assert_close(twin(x), plain(x))
    assert type(twin.input_block).__name__.startswith("Recomputed")
