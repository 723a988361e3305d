"""Loading Flux (a diffusers folder, a hub id, or a tiny random model), text encoding, latent (un)packing.

A tiny model is saved into the run directory (``RUN/base``) so that every file a tiny run exports can be
loaded again by diffusers, exactly like a real base model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from training.config import TinyModel

TINY_MARKER = "makeanything_tiny.json"
CLIP_LENGTH = 77


class ByteTokenizer:
    """Tokenizer of the tiny model (no vocabulary files exist offline): UTF-8 bytes + 2, padded with 0."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __call__(self, texts: list[str], max_length: int, **_) -> dict[str, torch.Tensor]:
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        for i, text in enumerate(texts):
            codes = [2 + b % (self.vocab_size - 2) for b in text.encode("utf-8")][:max_length]
            ids[i, : len(codes)] = torch.tensor(codes, dtype=torch.long)
        return {"input_ids": ids}


@dataclass
class Flux:
    """The components the trainer needs; ``pipeline()`` assembles a real diffusers FluxPipeline from them."""

    transformer: FluxTransformer2DModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    text_encoder_2: T5EncoderModel
    tokenizer: object
    tokenizer_2: object
    scheduler: FlowMatchEulerDiscreteScheduler
    text_length: int
    source: str

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def token_px(self) -> int:
        """Pixels per transformer token side (VAE factor x 2x2 packing): cells must be multiples of this."""
        return self.vae_scale * 2

    @torch.no_grad()
    def encode_text(self, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 embeddings padded to the fixed length [B, L, D], CLIP pooled [B, P]); Flux uses no text mask."""
        clip_ids = self.tokenizer(
            captions, max_length=CLIP_LENGTH, padding="max_length", truncation=True, return_tensors="pt"
        )["input_ids"].to(device)
        t5_ids = self.tokenizer_2(
            captions, max_length=self.text_length, padding="max_length", truncation=True, return_tensors="pt"
        )["input_ids"].to(device)
        pooled = self.text_encoder(clip_ids, output_hidden_states=False).pooler_output
        embeds = self.text_encoder_2(t5_ids, output_hidden_states=False)[0]
        return embeds.float(), pooled.float()

    @torch.no_grad()
    def latent_parameters(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> the VAE's latent distribution (mean and log-variance) [B, 2C, h, w]."""
        vae = self.vae
        return vae.encode(images.to(vae.device, vae.dtype)).latent_dist.parameters

    def latents(self, parameters: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised latents [B, C, h, w]: a sample of the distribution (``generator``) or its mode."""
        dist = DiagonalGaussianDistribution(parameters)
        z = dist.sample(generator) if generator is not None else dist.mode()
        return ((z - self.vae.config.shift_factor) * self.vae.config.scaling_factor).float()

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> normalised latents [B, C, H/f, W/f]."""
        return self.latents(self.latent_parameters(images), generator)

    def pipeline(self, transformer: torch.nn.Module | None = None) -> FluxPipeline:
        return FluxPipeline(
            scheduler=self.scheduler,
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=None,
            text_encoder_2=self.text_encoder_2,
            tokenizer_2=None,
            transformer=transformer or self.transformer,
        )


def pack(latents: torch.Tensor) -> torch.Tensor:
    b, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def image_ids(h: int, w: int, device: torch.device) -> torch.Tensor:
    """RoPE positions of the packed tokens of an h x w latent."""
    return FluxPipeline._prepare_latent_image_ids(1, h // 2, w // 2, device, torch.float32)


def build_tiny(spec: TinyModel) -> Flux:
    """A random Flux with the real architecture classes (diffusers' own test sizes)."""
    torch.manual_seed(spec.seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=spec.num_layers,
        num_single_layers=spec.num_single_layers,
        attention_head_dim=spec.attention_head_dim,
        num_attention_heads=spec.num_attention_heads,
        joint_attention_dim=spec.joint_attention_dim,
        pooled_projection_dim=spec.pooled_projection_dim,
        axes_dims_rope=list(spec.axes_dims_rope),
        guidance_embeds=True,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
        sample_size=32,
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
            hidden_act="gelu",
            projection_dim=spec.pooled_projection_dim,
            max_position_embeddings=CLIP_LENGTH,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            d_model=spec.joint_attention_dim,
            d_ff=37,
            d_kv=8,
            num_layers=2,
            num_heads=4,
            vocab_size=1000,
            relative_attention_num_buckets=8,
        )
    )
    return Flux(
        transformer,
        vae,
        clip.eval(),
        t5.eval(),
        ByteTokenizer(1000),
        ByteTokenizer(1000),
        FlowMatchEulerDiscreteScheduler(),
        spec.text_length,
        "tiny",
    )


def save_base(flux: Flux, folder: Path) -> None:
    """Write a model (tiny) as a diffusers folder that :func:`load_flux` reads back."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "scheduler"):
        getattr(flux, name).save_pretrained(folder / name)
    (folder / TINY_MARKER).write_text(
        json.dumps({"text_length": flux.text_length, "vocab_size": flux.tokenizer.vocab_size})
    )


def load_flux(source: str | Path, dtype: torch.dtype = torch.float32, text_length: int = 512) -> Flux:
    """Flux from a diffusers folder (ours or the official layout) or a hub id."""
    path = Path(source)
    marker = path / TINY_MARKER
    if path.is_dir() and marker.is_file():
        info = json.loads(marker.read_text())
        tok, tok2, text_length = (
            ByteTokenizer(info["vocab_size"]),
            ByteTokenizer(info["vocab_size"]),
            info["text_length"],
        )
    else:
        from transformers import CLIPTokenizer, T5TokenizerFast

        tok = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        tok2 = T5TokenizerFast.from_pretrained(source, subfolder="tokenizer_2")
    kw = {"torch_dtype": dtype}
    return Flux(
        FluxTransformer2DModel.from_pretrained(source, subfolder="transformer", **kw),
        AutoencoderKL.from_pretrained(source, subfolder="vae", **kw),
        CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **kw).eval(),
        T5EncoderModel.from_pretrained(source, subfolder="text_encoder_2", **kw).eval(),
        tok,
        tok2,
        FlowMatchEulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler"),
        text_length,
        str(source),
    )
