"""A small masked-language model shipped as custom code (``trust_remote_code``), for tests.

It carries, on purpose, the three traits that trip up loading and the SPLADE fast path:

- a rotary position table computed in ``__init__`` and registered as a *non-persistent complex*
  buffer (``RotaryMLMModel.rotary``): never saved, and ``_init_weights`` does not refill it;
- the vocabulary projection is an ``nn.Linear`` named ``decoder`` that ``get_output_embeddings()``
  does not return;
- no ``token_type_ids`` input (``forward`` takes ``input_ids``, ``attention_mask``, ``position_ids``
  and ``return_dict``, and nothing else).

Pre-norm blocks with RMSNorm, rotary self-attention (SDPA) and a SwiGLU feed-forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class RotaryMLMConfig(PretrainedConfig):
    model_type = "rotary_mlm"

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 128,
        max_position_embeddings: int = 512,
        rotary_base: float = 10000.0,
        norm_eps: float = 1e-6,
        pad_token_id: int = 0,
        **kwargs: object,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.rotary_base = rotary_base
        self.norm_eps = norm_eps
        super().__init__(pad_token_id=pad_token_id, **kwargs)


def rotary_table(head_dim: int, positions: int, base: float) -> torch.Tensor:
    """``[positions, head_dim / 2]`` complex rotations ``exp(i * p * base^(-2k / head_dim))``."""
    inverse = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inverse)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of ``x [B, heads, L, D]`` by ``table [B, 1, L, D / 2]``."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * table).flatten(-2).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.float() * scale).type_as(x) * self.weight


class Block(nn.Module):
    def __init__(self, config: RotaryMLMConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.attention_norm = RMSNorm(width, config.norm_eps)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.ffn_norm = RMSNorm(width, config.norm_eps)
        self.gate_up = nn.Linear(width, 2 * config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, width, bias=False)

    def forward(self, x: torch.Tensor, table: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        q, k = rotate(q, table), rotate(k, table)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, width))
        gate, up = self.gate_up(self.ffn_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class RotaryMLMPreTrainedModel(PreTrainedModel):
    config_class = RotaryMLMConfig
    base_model_prefix = "model"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.05)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class RotaryMLMModel(RotaryMLMPreTrainedModel):
    def __init__(self, config: RotaryMLMConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        head_dim = config.hidden_size // config.num_attention_heads
        table = rotary_table(head_dim, config.max_position_embeddings, config.rotary_base)
        self.register_buffer("rotary", table, persistent=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        length = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device)[None, :].expand(
                input_ids.shape[0], -1
            )
        table = self.rotary[position_ids][:, None]
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :]
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, table, mask)
        return self.norm(x)


class RotaryMLMForMaskedLM(RotaryMLMPreTrainedModel):
    def __init__(self, config: RotaryMLMConfig) -> None:
        super().__init__(config)
        self.model = RotaryMLMModel(config)
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,  # passed by sentence-transformers; always a MaskedLMOutput
    ) -> MaskedLMOutput:
        hidden = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids)
        hidden = self.transform_norm(F.gelu(self.transform(hidden)))
        return MaskedLMOutput(logits=self.decoder(hidden))
