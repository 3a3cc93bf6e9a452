"""Random-weight test models in the other shapes of Immich's CLIP catalogue (dev and tests only).

    siglip2  open_clip: a timm SigLIP ViT (attention-pool head) + a text transformer pooling its last token,
             a Gemma tokenizer, text_cfg.tokenizer_kwargs.clean = "canonicalize"     (as ViT-B-16-SigLIP2)
    nllb     open_clip: the same ViT + a Hugging Face M2M100 (NLLB) encoder, an NLLB tokenizer carrying
             the FLORES-200 language codes                                          (as nllb-clip-base-siglip)
    mclip    M-CLIP: an XLM-R encoder, masked mean pool, linear, normalised; inputs input_ids +
             attention_mask; the visual tower is open_clip's tiny ViT            (as XLM-Roberta-Large-Vit-B-32)

Each is exported as Immich's exporter exports it (export/immich_model_exporter/exporters/onnx/models/
openclip.py and mclip.py: batch fixed at 1, opset 19, int32 inputs, output "embedding", the tokenizer
saved beside the textual model, config.json = the open_clip config). No hub is reachable, so the
tokenizers are trained here on a few sentences with the `tokenizers` library and wrapped in the
transformers tokenizer class of each model (GemmaTokenizer, NllbTokenizer, XLMRobertaTokenizer): their
tokenizer.json carries that model's special tokens, templates and padding. SigLIP's preprocessing (mean and
std 0.5, squash) is what open_clip's pretrained tag would bring; here it is forced and kept beside the config.

References, on the weights the ONNX files came from: `model_builder.openclip_reference` (siglip2, nllb: the
open_clip config, weights and tokenizer folder under OUT_DIR/openclip/) and `mclip_reference` (OUT_DIR/mclip/).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.dev.model_builder import (
    PREPROCESS_FILE,
    SEED,
    SIZES,
    build_immich,
    create_openclip_model,
    export_fixed,
    export_openclip_model,
    save_json,
)
from shared.dev.open_clip_import import allow_torchvision_import

# What the tokenizers learn from: several languages, capitals, punctuation, underscores, file names.
SENTENCES = [
    "A photo of a dog on the beach.", "Two people walking at sunset!", "a red car, a blue bike; and a dog's toy?",
    "Rock & Roll: the BEST photos (2024)", "snake_case_file_name IMG_2041.jpg", "My cat sleeps on the sofa.",
    "ein rotes Auto vor dem Haus", "zwei Katzen im Schnee", "Große Mauer in China", "Der Hund spielt im Park.",
    "Le chat noir dort sur le canapé.", "café, crème brûlée & naïve façade", "une photo de la tour Eiffel",
    "un perro en la playa", "fotos de família no Natal", "東京の夜景", "北京的长城", "Москва зимой",
    "mountains, lakes and forests in autumn", "birthday party with cake and candles", "a child riding a bicycle",
]
EMBED_DIM = 64  # a SigLIP ViT with no projection: its width is the embedding size
SIGLIP_CONTEXT = 64
# open_clip's preprocessing for SigLIP weights (pretrained.py `_slpcfg`): the pretrained tag brings it.
SIGLIP_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                     "resize_mode": "squash"}
# timm's vit_base_patch16_siglip_224, scaled down: no class token, attention-pool ("map") head.
TINY_VIT = "vit_tiny_test_patch16_siglip_64"
TINY_VIT_ARGS = {"img_size": 64, "patch_size": 16, "embed_dim": EMBED_DIM, "depth": 2, "num_heads": 4,
                 "class_token": False, "global_pool": "map"}
SIGLIP_VISION = {"image_size": 64, "timm_model_name": TINY_VIT, "timm_model_pretrained": False,
                 "timm_pool": "map", "timm_proj": "none"}
MCLIP_CONTEXT = 77


def register_tiny_siglip_vit() -> None:
    """Make TINY_VIT a timm model name (once per process), as the open_clip config refers to it."""
    allow_torchvision_import()
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import _create_vision_transformer

    if timm.is_model(TINY_VIT):
        return

    def vit_tiny_test_patch16_siglip_64(pretrained: bool = False, **kwargs: Any) -> Any:
        return _create_vision_transformer(TINY_VIT, pretrained=pretrained, **{**TINY_VIT_ARGS, **kwargs})

    register_model(vit_tiny_test_patch16_siglip_64)


def _trained(model: Any, pre_tokenizer: Any, trainer: Any, normalizer: Any = None) -> dict[str, Any]:
    """The `tokenizers` model trained on SENTENCES, as tokenizer.json stores it."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer(model)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.train_from_iterator(SENTENCES, trainer)
    return json.loads(tokenizer.to_str())["model"]


def _merges(model: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]  # type: ignore[misc]


def gemma_tokenizer() -> Any:
    """SigLIP2's tokenizer family: Gemma's byte-fallback BPE over text whose spaces became "▁"."""
    from tokenizers import models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Gemma's ids 0-4
    model = _trained(models.BPE(unk_token="<unk>", byte_fallback=True),
                     pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous"),
                     trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False),
                     normalizers.Replace(" ", "▁"))
    # Padded on the right to the full context, as SigLIP's text tower (pooling the last token) was trained.
    return GemmaTokenizer(vocab=model["vocab"], merges=_merges(model), model_max_length=SIGLIP_CONTEXT,
                          padding_side="right")


def nllb_tokenizer() -> Any:
    """NLLB's: SentencePiece BPE, every FLORES-200 language code a special token, "eng_Latn $A </s>"."""
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import NllbTokenizer

    model = _trained(models.BPE(unk_token="<unk>"), pre_tokenizers.Metaspace(),
                     trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                         show_progress=False))
    return NllbTokenizer(vocab=model["vocab"], merges=_merges(model), model_max_length=MCLIP_CONTEXT)


def xlmr_tokenizer() -> Any:
    """XLM-R's: a SentencePiece Unigram model, "<s> $A </s>", <pad> = 1."""
    from tokenizers import models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    model = _trained(models.Unigram(),
                     pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()]),
                     trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>",
                                             show_progress=False))
    return XLMRobertaTokenizer(vocab=[tuple(piece) for piece in model["vocab"]], model_max_length=MCLIP_CONTEXT)


def _build_openclip(out_dir: Path, config: dict[str, Any], tokenizer: Any, model_id: str,
                    text_config: Any = None) -> Path:
    """Save config, tokenizer (and a Hugging Face text config) under openclip/, then create and export."""
    folder = out_dir / "openclip"
    text_cfg = config["text_cfg"]
    tokenizer.save_pretrained(folder / text_cfg["hf_tokenizer_name"])
    if text_config is not None:
        text_config.save_pretrained(folder / text_cfg["hf_model_name"])
    save_json(config, folder / f"{Path(model_id).name}.json")
    save_json(SIGLIP_PREPROCESS, folder / PREPROCESS_FILE)
    model = create_openclip_model(folder)
    # Immich: AutoTokenizer.from_pretrained(text_cfg["hf_tokenizer_name"]).save_pretrained(textual/)
    tokenizer.save_pretrained(out_dir / "textual")
    export_openclip_model(model, config, out_dir, model_id)
    return out_dir


def build_siglip2(out_dir: Path) -> Path:
    tokenizer = gemma_tokenizer()
    config = {
        "embed_dim": EMBED_DIM,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": SIGLIP_VISION,
        "text_cfg": {
            "context_length": SIGLIP_CONTEXT, "vocab_size": len(tokenizer),
            "hf_tokenizer_name": "siglip2-tokenizer", "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": EMBED_DIM, "heads": 4, "layers": 2, "no_causal_mask": True, "proj_bias": True,
            "pool_type": "last", "norm_kwargs": {"eps": 1e-6}, "act_kwargs": {"approximate": "tanh"},
        },
    }
    return _build_openclip(out_dir, config, tokenizer, "test/random-siglip2-tiny")


def build_nllb(out_dir: Path) -> Path:
    allow_torchvision_import()
    from transformers import M2M100Config

    tokenizer = nllb_tokenizer()
    text_config = M2M100Config(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
    )
    # The folder name stands for facebook/nllb-200-distilled-600M, the text model and tokenizer it imitates.
    config = {
        "embed_dim": EMBED_DIM,
        "custom_text": True,
        "init_logit_bias": -10,
        "vision_cfg": SIGLIP_VISION,
        "text_cfg": {"hf_model_name": "nllb-200-tiny", "hf_tokenizer_name": "nllb-200-tiny",
                     "hf_proj_type": "linear", "hf_pooler_type": "cls_pooler"},
    }
    return _build_openclip(out_dir, config, tokenizer, "test/random-nllb-clip-tiny-siglip", text_config)


def mclip_module(text_config: Any, embed_dim: int) -> Any:
    """M-CLIP's MultilingualCLIP (transformer + LinearTransformation) with the forward Immich exports."""
    allow_torchvision_import()
    import torch
    from transformers import XLMRobertaModel

    class MultilingualClip(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = XLMRobertaModel(text_config)
            self.LinearTransformation = torch.nn.Linear(text_config.hidden_size, embed_dim)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            embs = self.transformer(input_ids, attention_mask)[0]
            embs = (embs * attention_mask.unsqueeze(2)).sum(dim=1) / attention_mask.sum(dim=1)[:, None]
            embs = self.LinearTransformation(embs)
            return torch.nn.functional.normalize(embs, dim=-1)

    return MultilingualClip()


def build_mclip(out_dir: Path) -> Path:
    """Immich's mclip exporter: the textual tower from M-CLIP, the visual tower (and config.json) from the
    open_clip model M-CLIP was distilled against; here the tiny open_clip ViT of the immich recipe."""
    allow_torchvision_import()
    import torch
    from safetensors.torch import save_file
    from transformers import XLMRobertaConfig

    build_immich(out_dir, "tiny")
    shutil.rmtree(out_dir / "textual")
    config_path = out_dir / "config.json"
    save_json({**json.loads(config_path.read_text()), "model_id": "test/random-mclip-tiny"}, config_path)

    tokenizer = xlmr_tokenizer()
    text_config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=MCLIP_CONTEXT + 2,  # positions start after <pad> (1)
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(SEED)
    model = mclip_module(text_config, SIZES["tiny"]["embed_dim"]).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    reference = out_dir / "mclip"
    text_config.save_pretrained(reference)
    tokenizer.save_pretrained(reference)
    save_file(model.state_dict(), str(reference / "weights.safetensors"))

    tokenizer.save_pretrained(out_dir / "textual")  # Immich: AutoTokenizer.from_pretrained(model_name)
    ones = torch.ones(1, MCLIP_CONTEXT, dtype=torch.int32)
    export_fixed(model, {"input_ids": ones, "attention_mask": ones}, out_dir / "textual" / "model.onnx")
    return out_dir


def mclip_reference(model_dir: Path) -> Any:
    """The M-CLIP module of an mclip-recipe model, on the weights its textual model.onnx came from."""
    allow_torchvision_import()
    from safetensors.torch import load_file
    from transformers import XLMRobertaConfig

    folder = Path(model_dir) / "mclip"
    embed_dim = json.loads((Path(model_dir) / "config.json").read_text())["embed_dim"]
    model = mclip_module(XLMRobertaConfig.from_pretrained(folder), embed_dim)
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    return model.eval()


BUILDERS: dict[str, Callable[[Path], Path]] = {"siglip2": build_siglip2, "nllb": build_nllb, "mclip": build_mclip}
