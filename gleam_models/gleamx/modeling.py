"""The GLEAM-X model (LLaVA-style): GLEAM-C tower -> spatial tokens -> MLP projector -> causal LM.

Each image becomes `grid*grid` pooled cells of the tower's last feature map (+ one global token);
the pair's GLEAM-C cosine similarity can become one more token (Fourier features -> MLP). Those
vectors replace the placeholder tokens of ONE chat prompt holding both images. The LM gets LoRA
adapters (peft); the projector is trained fully; the tower is frozen (its features are cached).

`save_pretrained` / `from_pretrained` write and read config.json + model.safetensors (no pickle);
`AutoConfig` / `AutoModel` know the "gleamx" model type once this module is imported.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from data_assets.gleamx.config import LANGUAGES
from gleam_models.config import EncoderConfig
from gleam_models.encoder import GleamEncoder, create_encoder

COSINE_FREQS = 8  # Fourier features of the standardised similarity z: z, sin(k*z/2), cos(k*z/2), k = 1..8


class GleamXConfig(PretrainedConfig):
    model_type = "gleamx"
    sub_configs = {"text_config": AutoConfig}

    def __init__(self, text_config=None, vision_config: dict | None = None, grid: int = 2,
                 global_token: bool = True, projector_hidden: int = 1024, use_cosine: bool = True,
                 verdict_first: bool = False, image_token_id: int | None = None, cosine_mean: float = 0.0,
                 cosine_std: float = 1.0, fact_hints: bool = False,
                 fact_hint_languages: list[str] | None = None, fact_hint_min_confidence: float = 0.0, **kwargs):
        if isinstance(text_config, dict):
            text_config = AutoConfig.for_model(**text_config)
        self.text_config = text_config
        # GLEAM-C encoder: {"backbone", "embed_dim", "input_size", "feature_dim"}
        self.vision_config = dict(vision_config or {})
        self.grid, self.global_token = grid, global_token
        self.projector_hidden, self.use_cosine = projector_hidden, use_cosine
        self.verdict_first = verdict_first  # answer format: verdict line first (gleam_models.gleamx.prompts)
        self.fact_hints = fact_hints  # the prompt carries fact_probes readings (fact_probes.safetensors beside the weights)
        # prompt languages given them; a model saved before this field had them in every language
        self.fact_hint_languages = list(LANGUAGES if fact_hint_languages is None else fact_hint_languages)
        self.fact_hint_min_confidence = fact_hint_min_confidence  # readings below it are said to be unclear
        # placeholder id: one past the vocabulary, never embedded (its rows are replaced)
        self.image_token_id = image_token_id
        # GLEAM-C cosines of real pairs sit in a narrow band (~0.7-1.0): standardised with the
        # training set's mean/std (set by the trainer) so the projector sees differences that matter
        self.cosine_mean, self.cosine_std = cosine_mean, cosine_std
        super().__init__(**kwargs)

    @property
    def tokens_per_image(self) -> int:
        return self.grid * self.grid + int(self.global_token)

    @property
    def feature_tokens(self) -> int:
        """Placeholder tokens per prompt: two images (+ the similarity)."""
        return 2 * self.tokens_per_image + int(self.use_cosine)


def encoder_config(vision_config: dict) -> EncoderConfig:
    return EncoderConfig(backbone=vision_config["backbone"], weights="none", embed_dim=vision_config.get("embed_dim"),
                         input_size=vision_config["input_size"], channels_last=False)


class Projector(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


def cosine_features(cosine: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    k = torch.arange(1, COSINE_FREQS + 1, device=cosine.device, dtype=torch.float32) / 2
    z = ((cosine.float() - mean) / max(std, 1e-6)).unsqueeze(-1)
    return torch.cat([z, torch.sin(z * k), torch.cos(z * k)], dim=-1)


class GleamXForConditionalGeneration(PreTrainedModel):
    config_class = GleamXConfig
    base_model_prefix = "gleamx"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: GleamXConfig, language_model: nn.Module | None = None,
                 vision_tower: GleamEncoder | None = None):
        super().__init__(config)
        vc = config.vision_config
        self.vision_tower = vision_tower or create_encoder(encoder_config(vc))
        self.language_model = language_model or AutoModelForCausalLM.from_config(config.text_config)
        width = config.text_config.hidden_size
        self.projector = Projector(vc["feature_dim"], config.projector_hidden, width)
        self.cosine_projector = Projector(2 * COSINE_FREQS + 1, config.projector_hidden, width) if config.use_cosine else None
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def init_projectors(self, seed: int) -> None:
        """A seeded init of the trainable projectors, independent of the global RNG."""
        gen = torch.Generator().manual_seed(seed)
        for proj in filter(None, (self.projector, self.cosine_projector)):
            for layer in (proj.fc1, proj.fc2):
                with torch.no_grad():
                    layer.weight.normal_(0.0, layer.in_features ** -0.5, generator=gen)
                    layer.bias.zero_()
            nn.init.ones_(proj.norm.weight)
            nn.init.zeros_(proj.norm.bias)

    # ------------------------------------------------------------------ vision
    @torch.no_grad()
    def encode_images(self, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B,3,H,W] -> (tokens [B, tokens_per_image, C], unit embeddings [B, D]), fp32."""
        tower = self.vision_tower.eval()
        x = tower.normalize(images_uint8.to(tower.mean.device))
        fmap = tower.backbone.forward_features(x).float()
        g = self.config.grid
        tokens = [F.adaptive_avg_pool2d(fmap, (g, g)).flatten(2).transpose(1, 2)]
        if self.config.global_token:
            tokens.append(fmap.mean(dim=(2, 3)).unsqueeze(1))
        pooled = tower.backbone.forward_head(fmap)
        embedding = F.normalize(tower.proj(pooled).float(), dim=-1)
        return torch.cat(tokens, dim=1), embedding

    def feature_embeddings(self, image_tokens: torch.Tensor, cosine: torch.Tensor | None) -> torch.Tensor:
        """image_tokens [B, 2, T, C] (query, satellite) -> LM-space vectors [B, feature_tokens, D]."""
        b = image_tokens.shape[0]
        out = self.projector(image_tokens.reshape(b, -1, image_tokens.shape[-1]))
        if self.cosine_projector is not None:
            if cosine is None:
                raise ValueError("this model takes the pair's GLEAM-C cosine similarity (use_cosine=True)")
            out = torch.cat([out, self.cosine_projector(cosine_features(cosine, self.config.cosine_mean, self.config.cosine_std)).unsqueeze(1)], dim=1)
        return out

    def input_embeddings(self, input_ids: torch.Tensor, image_tokens: torch.Tensor,
                         cosine: torch.Tensor | None) -> torch.Tensor:
        mask = input_ids == self.config.image_token_id
        counts = mask.sum(dim=1)
        if bool((counts != self.config.feature_tokens).any()):
            raise ValueError(f"each prompt needs {self.config.feature_tokens} feature placeholders, got {counts.tolist()}")
        embed = self.language_model.get_input_embeddings()
        text = embed(input_ids.masked_fill(mask, 0))
        feats = self.feature_embeddings(image_tokens.to(text.device), cosine).to(text.dtype)
        return text.masked_scatter(mask.unsqueeze(-1), feats)

    # ------------------------------------------------------------------ LM
    def forward(self, input_ids, attention_mask=None, image_tokens=None, cosine=None, labels=None,
                loss_weights=None, **kwargs):
        """With labels: the loss only (logits=None), the LM head applied to the answer positions
        alone; a 49k-token vocabulary over every prompt position would cost more than the LM body.
        `loss_weights` (same shape as labels) turns the mean into a weighted mean over answer tokens."""
        embeds = self.input_embeddings(input_ids, image_tokens, cosine)
        if labels is None:
            return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        lm = self.language_model
        lm = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
        hidden = lm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
        if loss_weights is None:
            return CausalLMOutputWithPast(loss=F.cross_entropy(logits.float(), targets[keep]), logits=None)
        w = loss_weights[:, 1:][keep].float()
        loss = (F.cross_entropy(logits.float(), targets[keep], reduction="none") * w).sum() / w.sum()
        return CausalLMOutputWithPast(loss=loss, logits=None)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, image_tokens, cosine=None, **gen_kwargs):
        """Greedy by default, KV cache on; returns only the new token ids."""
        embeds = self.input_embeddings(input_ids, image_tokens, cosine)
        gen_kwargs = {"do_sample": False, "use_cache": True, **gen_kwargs}
        return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **gen_kwargs)


AutoConfig.register("gleamx", GleamXConfig, exist_ok=True)
AutoModel.register(GleamXConfig, GleamXForConditionalGeneration, exist_ok=True)
