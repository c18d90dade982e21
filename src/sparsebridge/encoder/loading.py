"""What :meth:`Encoder.load <sparsebridge.encoder.Encoder.load>` does to a model after transformers loads it.

- **Constructor buffers.** transformers 5 builds a model on the meta device and re-creates its
  non-persistent buffers (tables such as RoPE frequencies, computed in ``__init__`` and never saved)
  with ``torch.empty_like``; only a model whose ``_init_weights`` refills them gets their values
  back. :func:`restore_constructor_buffers` builds a second instance from the model's config (weights
  allocated, not initialised) and copies every non-persistent buffer from it, for any architecture.
- **Dtype.** :func:`cast_floating` casts floating-point parameters and buffers that are not already
  in the run dtype. ``Module.to(float_dtype)`` would also cast complex buffers to real, dropping
  their imaginary part; complex and integer tensors keep their type here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["cast_floating", "restore_constructor_buffers"]


def restore_constructor_buffers(model: nn.Module) -> list[str]:
    """Give every non-persistent buffer of the transformers models in ``model`` its constructor value.

    Returns the qualified names of the buffers that were copied (relative to each transformers
    model). Costs one construction of the model without weight initialisation.
    """
    restored: list[str] = []
    for hf_model in _outermost_transformers_models(model):
        owners = [
            (name, module, buffer_name)
            for name, module in hf_model.named_modules()
            for buffer_name in sorted(module._non_persistent_buffers_set)
            if module._buffers.get(buffer_name) is not None
        ]
        if not owners:
            continue
        fresh = _fresh_instance(hf_model)
        for name, module, buffer_name in owners:
            value = fresh.get_submodule(name)._buffers.get(buffer_name)
            old = module._buffers[buffer_name]
            assert old is not None
            if value is None or value.shape != old.shape:
                continue
            module._buffers[buffer_name] = value.to(device=old.device, dtype=old.dtype)
            restored.append(f"{name}.{buffer_name}" if name else buffer_name)
    return restored


def cast_floating(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the floating-point parameters and buffers of ``model`` that are not ``dtype`` already."""
    if not dtype.is_floating_point:
        raise ValueError(f"{dtype} is not a floating-point dtype")
    for parameter in model.parameters():
        if parameter.is_floating_point() and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                module._buffers[name] = buffer.to(dtype)


def _outermost_transformers_models(model: nn.Module) -> Iterator[nn.Module]:
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        yield model
        return
    for child in model.children():
        yield from _outermost_transformers_models(child)


def _fresh_instance(hf_model: nn.Module) -> nn.Module:
    """A new instance of ``hf_model``'s class from its config, on the CPU, weights left uninitialised."""
    from transformers.initialization import no_init_weights

    config = copy.deepcopy(getattr(hf_model, "config"))  # noqa: B009 - set by transformers
    with no_init_weights(), torch.device("cpu"):
        return type(hf_model)(config)
