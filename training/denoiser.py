"""The module the optimiser (and DDP) sees: Flux's transformer with its LoRA heads chosen per sample."""

from __future__ import annotations

import torch
from torch import nn

from training.asymmetric_lora import AsymmetricLora


class Denoiser(nn.Module):
    """Predicts the flow velocity of packed image tokens, each sample through its own task head."""

    def __init__(self, transformer: nn.Module, lora: AsymmetricLora) -> None:
        super().__init__()
        self.transformer = transformer
        self.lora = lora

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        pooled: torch.Tensor,
        img_ids: torch.Tensor,
        heads: list[int],
        guidance: float = 1.0,
    ) -> torch.Tensor:
        self.lora.use(heads)
        g = (
            torch.full((x_t.shape[0],), guidance, device=x_t.device, dtype=torch.float32)
            if self.transformer.config.guidance_embeds
            else None
        )
        txt_ids = torch.zeros(text.shape[1], 3, device=x_t.device, dtype=img_ids.dtype)
        return self.transformer(
            hidden_states=x_t,
            encoder_hidden_states=text,
            pooled_projections=pooled,
            timestep=t.to(x_t.dtype),
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=g,
            return_dict=False,
        )[0]
