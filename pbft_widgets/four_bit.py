"""Keeps 4-bit layers trainable on CPUs with AVX-512 BF16.

bitsandbytes 0.50 repacks a 4-bit layer's weights into a CPU inference layout the first time the
layer runs in eval mode without gradients (an evaluation, a probe, a generation). A layer in that
layout still computes the right outputs, but its output carries no gradient back to its input, so
no LoRA matrix before it learns (a layer's LoRA reaches the loss only through the 4-bit layers
after it): QLoRA on the clause benchmark ended 10 steps at a loss of 9.63 where the same run on the
training layout reached 6.37. A checkpoint save happened to restore the layout (bitsandbytes
unpacks to save), which is why runs that saved often still learned. `trainable_4bit` restores the
training layout and keeps the repacking off while `train()` runs; evaluation afterwards may repack.
The repacking also rounds each block's scale to bf16, which the restore cannot undo (a change of
at most ~0.4 % of a block's scale).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _four_bit_layers(model: Any) -> list[Any]:
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes: no 4-bit layers
        return []
    return [module for module in model.modules() if isinstance(module, Linear4bit)]


def is_packed_for_cpu_inference(layer: Any) -> bool:
    """Whether bitsandbytes has moved this layer's weights to its CPU inference layout."""
    return bool(getattr(getattr(layer.weight, "quant_state", None), "packing_format_for_cpu", False))


def unpack(layer: Any) -> None:
    """Put a repacked layer's weights back in the layout its backward pass needs."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
        layer.weight.data, layer.weight.quant_state)


@contextmanager
def trainable_4bit(model: Any) -> Iterator[int]:
    """Within the block, `model`'s 4-bit layers stay in the training layout. Yields how many it unpacked."""
    layers = _four_bit_layers(model)
    unpacked = 0
    for layer in layers:
        if is_packed_for_cpu_inference(layer):
            unpack(layer)
            unpacked += 1
    switches = [(layer, layer.support_avx512bf16_for_cpu) for layer in layers
                if hasattr(layer, "support_avx512bf16_for_cpu")]
    for layer, _ in switches:
        layer.support_avx512bf16_for_cpu = False  # evaluations during training keep the layout too
    try:
        yield unpacked
    finally:
        for layer, repacks in switches:
            layer.support_avx512bf16_for_cpu = repacks
