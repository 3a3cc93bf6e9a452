"""CLIP on the CPU with ONNX Runtime, reading the layout Immich publishes for its models.

    config.json                  open_clip config: embed_dim, text_cfg.context_length (+ model_id, test_model)
    visual/model.onnx            input "image" float32 [n,3,H,W] -> [n, embed_dim]
    visual/preprocess_cfg.json   size, mean, std, interpolation, resize_mode, fill_color
    textual/model.onnx           input "text" int32 [n,ctx] (OpenAI/open_clip) or
                                 "input_ids" + "attention_mask" (multilingual XLM-R models)
    textual/tokenizer.json       + tokenizer_config.json (pad token)

Query text is prepared as Immich's runtime prepares it (shared/embedders/text.py): whitespace collapsed,
canonicalized when config.json's text_cfg.tokenizer_kwargs.clean says so (SigLIP, SigLIP2), and prefixed
with the query language's FLORES-200 code for NLLB models (their text_cfg names an NLLB tokenizer).

Each tower loads on first use, once, under its own lock: a text query never loads the visual model.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from shared.embedders import Embedder, EmbedderError, ModelUnavailable, normalize_rows
from shared.embedders.text import DEFAULT_LANGUAGE, canonicalize, collapse_whitespace, flores200_code

if TYPE_CHECKING:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from shared.config import Settings

log = logging.getLogger(__name__)

TOWERS = ("visual", "textual")
TEXT_BATCH = 32
INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# Immich repos also carry files for other runtimes (RKNN, ArmNN, fp16): never download those.
HUB_IGNORE = ["*.rknn", "*.armnn", "*/rknpu/*", "*/armnn/*", "*/fp16/*", "*.md", ".gitattributes"]
ONNX_INT_TYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbedderError(
            f"{path} is missing: a model directory needs Immich's layout (config.json, visual/, textual/)"
        ) from None
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"cannot read {path}: {exc}") from None


class Preprocessor:
    """PIL image -> normalised CHW float32, as the model's visual/preprocess_cfg.json says (open_clip)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        size = cfg.get("size", 224)
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))
        self.height, self.width = height, width
        self.mean = np.asarray(cfg.get("mean", [0.48145466, 0.4578275, 0.40821073]), dtype=np.float32)
        self.std = np.asarray(cfg.get("std", [0.26862954, 0.26130258, 0.27577711]), dtype=np.float32)
        interpolation = str(cfg.get("interpolation", "bicubic")).lower()
        if interpolation not in INTERPOLATION:
            raise EmbedderError(f"preprocess_cfg.json: unknown interpolation {interpolation!r}")
        self.resample = INTERPOLATION[interpolation]
        self.resize_mode = str(cfg.get("resize_mode", "shortest")).lower()
        if self.resize_mode not in {"shortest", "longest", "squash"}:
            raise EmbedderError(f"preprocess_cfg.json: unknown resize_mode {self.resize_mode!r}")
        fill = cfg.get("fill_color", 0)
        self.fill = tuple(fill) if isinstance(fill, list) else (int(fill),) * 3

    def _resize(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        # reducing_gap: a cheap integer box-reduction first for big photos; indistinguishable in practice.
        return image.resize(size, self.resample, reducing_gap=3.0)

    def __call__(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        tw, th = self.width, self.height
        iw, ih = image.size
        if self.resize_mode == "squash":
            image = self._resize(image, (tw, th))
        elif self.resize_mode == "longest":
            scale = min(tw / iw, th / ih)
            new = (max(1, min(tw, int(iw * scale))), max(1, min(th, int(ih * scale))))
            canvas = Image.new("RGB", (tw, th), self.fill)
            canvas.paste(self._resize(image, new), ((tw - new[0]) // 2, (th - new[1]) // 2))
            image = canvas
        else:  # shortest side to size, then centre crop (what CLIP was trained with)
            if (iw, ih) != (tw, th):
                scale = max(tw / iw, th / ih)
                new_w, new_h = max(tw, int(iw * scale)), max(th, int(ih * scale))
                image = self._resize(image, (new_w, new_h))
                left, top = (new_w - tw) // 2, (new_h - th) // 2
                image = image.crop((left, top, left + tw, top + th))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        return ((pixels - self.mean) / self.std).transpose(2, 0, 1)


class OnnxClipEmbedder(Embedder):
    def __init__(
        self, root: Path, settings: Settings, *, model_id: str | None = None, repo_id: str | None = None
    ) -> None:
        self.root = Path(root)
        self.settings = settings
        self.repo_id = repo_id  # set when towers may still need downloading
        config = _read_json(self.root / "config.json")
        if "embed_dim" not in config:
            raise EmbedderError(f"{self.root / 'config.json'} has no embed_dim: is this an Immich CLIP model?")
        self.config = config
        self.dim = int(config["embed_dim"])
        self.model_id = model_id or str(config.get("model_id") or self.root.name)
        self.is_test_model = bool(config.get("test_model", False))
        self.quantized = settings.model_quantized
        text_cfg = config.get("text_cfg") or {}
        self.context_length = int(text_cfg.get("context_length", 77))
        self.canonicalize = (text_cfg.get("tokenizer_kwargs") or {}).get("clean") == "canonicalize"
        # Immich tells NLLB models by name ("nllb-clip-…"); their config names the NLLB tokenizer wherever they sit.
        self.takes_language = "nllb" in str(text_cfg.get("hf_tokenizer_name", "")).lower()
        image_size = (config.get("vision_cfg") or {}).get("image_size", 224)
        self.input_side = int(max(image_size) if isinstance(image_size, list) else image_size)
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._locks = {tower: threading.Lock() for tower in TOWERS}
        self._preprocess: Preprocessor | None = None
        self._tokenizer: Tokenizer | None = None
        # Rows per model call when the export fixes the batch dimension (Immich's current exporter: 1).
        self._fixed_batch: dict[str, int | None] = {}

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: str, settings: Settings) -> OnnxClipEmbedder:
        path = Path(spec).expanduser()
        if path.is_dir():
            return cls(path, settings)
        if path.exists():
            raise EmbedderError(
                f"IB_MODEL={spec!r} is a file; point it at a model directory (config.json, visual/, textual/)"
            )
        if spec.count("/") != 1 or spec.startswith((".", "/", "~")):
            raise ModelUnavailable(
                f"IB_MODEL={spec!r} is neither an existing directory nor a Hugging Face "
                "repo id like immich-app/ViT-B-32__openai"
            )
        root = _hub_snapshot(spec, settings, ["config.json"])
        return cls(root, settings, model_id=spec, repo_id=spec)

    # -- lazy loading ------------------------------------------------------------------------------

    def _tower_dir(self, tower: str) -> Path:
        directory = self.root / tower
        if self.repo_id and not (directory / "model.onnx").exists():
            # The hub may hand back a newer snapshot directory than config.json came from: use it.
            directory = _hub_snapshot(self.repo_id, self.settings, ["config.json", f"{tower}/*"]) / tower
        if not (directory / "model.onnx").exists():
            raise EmbedderError(f"{directory / 'model.onnx'} is missing: the model directory is incomplete")
        return directory

    def _session(self, tower: str) -> ort.InferenceSession:
        session = self._sessions.get(tower)
        if session is not None:
            return session
        with self._locks[tower]:
            if tower not in self._sessions:
                self._sessions[tower] = self._load_tower(tower)
            return self._sessions[tower]

    def _load_tower(self, tower: str) -> ort.InferenceSession:
        import onnxruntime as ort

        directory = self._tower_dir(tower)
        model_path = directory / "model.onnx"
        if self.quantized:
            from shared.embedders.quantize import quantized_path

            model_path = quantized_path(model_path, self.settings.model_cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads(tower)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise EmbedderError(f"cannot load {model_path}: {exc}") from None
        log.info("loaded %s tower of %s from %s", tower, self.model_id, model_path)
        batch_dim = session.get_inputs()[0].shape[0]
        self._fixed_batch[tower] = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        if tower == "visual":
            self._preprocess = Preprocessor(_read_json(directory / "preprocess_cfg.json"))
        else:
            seq_dim = session.get_inputs()[0].shape[-1]
            if isinstance(seq_dim, int):
                self.context_length = seq_dim
            self._tokenizer = self._load_tokenizer(directory)
        return session

    def _load_tokenizer(self, directory: Path) -> Tokenizer:
        from tokenizers import Tokenizer

        path = directory / "tokenizer.json"
        if not path.exists():
            raise EmbedderError(f"{path} is missing: the textual model needs its tokenizer")
        tokenizer = Tokenizer.from_file(str(path))
        config_path = directory / "tokenizer_config.json"
        pad = _read_json(config_path).get("pad_token") if config_path.exists() else None
        if isinstance(pad, dict):  # older configs store an AddedToken
            pad = pad.get("content")
        candidates = [p for p in (pad, "<|endoftext|>", "<pad>") if isinstance(p, str)]
        pad_token = next((p for p in candidates if tokenizer.token_to_id(p) is not None), None)
        if pad_token is None:
            raise EmbedderError(f"{directory}: cannot find the padding token in the tokenizer")
        # Fixed length, as the models were exported; longer texts are cut (keeping the end token).
        tokenizer.enable_padding(
            length=self.context_length, pad_id=tokenizer.token_to_id(pad_token), pad_token=pad_token
        )
        tokenizer.enable_truncation(max_length=self.context_length)
        return tokenizer

    def _threads(self, tower: str) -> int:
        """Intra-op threads. Image batches run side by side (IB_EMBED_PARALLEL), one thread each: under
        CPU contention that degrades gently, where one call spread over all cores stalls at every
        operator waiting for its slowest thread. Text queries come one at a time: all cores (0)."""
        if self.settings.model_threads:
            return self.settings.model_threads
        if tower == "visual" and self.settings.image_model_calls > 1:
            return 1
        return 0

    def load_tower(self, tower: str) -> None:
        """Load a tower now rather than on first use (warm-up, benchmarks)."""
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}")
        self._session(tower)

    def loaded(self) -> dict[str, bool]:
        return {tower: tower in self._sessions for tower in TOWERS}

    # -- embedding ---------------------------------------------------------------------------------

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images -> the visual model's input batch (loads the visual tower for its config)."""
        self._session("visual")
        assert self._preprocess is not None
        return np.stack([self._preprocess(image) for image in images])

    def prepare_text(self, text: str, lang: str = DEFAULT_LANGUAGE) -> str:
        """The string the tokenizer gets, as Immich's runtime makes it (see the module docstring)."""
        text = canonicalize(text) if self.canonicalize else collapse_whitespace(text)
        return flores200_code(lang) + text if self.takes_language else text

    def tokenize(self, texts: Sequence[str], lang: str = DEFAULT_LANGUAGE) -> dict[str, np.ndarray]:
        """Texts -> the textual model's inputs, named and typed as the model declares them."""
        session = self._session("textual")
        assert self._tokenizer is not None
        encodings = self._tokenizer.encode_batch([self.prepare_text(str(text), lang) for text in texts])
        ids = np.asarray([e.ids for e in encodings])
        mask = np.asarray([e.attention_mask for e in encodings])
        feeds: dict[str, np.ndarray] = {}
        for spec in session.get_inputs():
            dtype = ONNX_INT_TYPES.get(spec.type, np.int64)
            if spec.name in ("attention_mask", "mask"):
                feeds[spec.name] = mask.astype(dtype)
            else:  # "text" (open_clip) or "input_ids" (M-CLIP)
                feeds[spec.name] = ids.astype(dtype)
        return feeds

    def run_visual(self, pixels: np.ndarray) -> np.ndarray:
        """Raw model call on a preprocessed batch of any size (benchmarks time this separately)."""
        spec = self._session("visual").get_inputs()[0]
        dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        return self._run("visual", {spec.name: pixels.astype(dtype, copy=False)})

    def run_textual(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self._run("textual", feeds)

    def _run(self, tower: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The tower's first output for every row of `feeds`, whatever batch size the export fixed.

        A fixed-batch export (Immich's exporter fixes it at 1) gets one call per `fixed` rows; a short
        last chunk is padded with copies of its last row, whose outputs are dropped.
        """
        session = self._session(tower)
        fixed = self._fixed_batch.get(tower)
        rows = len(next(iter(feeds.values())))
        if fixed is None or fixed == rows:
            return session.run(None, feeds)[0]
        out = []
        for start in range(0, rows, fixed):
            chunk = {name: value[start : start + fixed] for name, value in feeds.items()}
            size = len(next(iter(chunk.values())))
            if size < fixed:
                chunk = {name: np.concatenate([value, np.repeat(value[-1:], fixed - size, axis=0)])
                         for name, value in chunk.items()}
            out.append(session.run(None, chunk)[0][:size])
        return np.concatenate(out)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self.settings.embed_batch_size  # bounds the memory of preprocessed pixels
        out = [self.run_visual(self.preprocess(images[i : i + step])) for i in range(0, len(images), step)]
        return self._check(normalize_rows(np.concatenate(out)))

    def prepare_image(self, image: Image.Image) -> np.ndarray:
        """The model's input row, so resizing runs in the ingest worker threads, not the model's."""
        return self.preprocess([image])[0]

    def embed_prepared(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        return self._check(normalize_rows(self.run_visual(np.stack(prepared))))

    def embed_texts(self, texts: Sequence[str], lang: str = DEFAULT_LANGUAGE) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [self.run_textual(self.tokenize(texts[i : i + TEXT_BATCH], lang))
               for i in range(0, len(texts), TEXT_BATCH)]
        return self._check(normalize_rows(np.concatenate(out)))

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[1] != self.dim:
            raise EmbedderError(
                f"{self.model_id}: the model returned {vectors.shape[1]}-d vectors but "
                f"config.json says embed_dim={self.dim}"
            )
        return vectors


def _hub_snapshot(repo_id: str, settings: Settings, patterns: list[str]) -> Path:
    """Files matching `patterns` from a Hugging Face repo, from the cache if there, else downloaded."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    cache_dir = settings.model_cache_dir
    wanted = [p for p in patterns if "*" not in p]
    try:  # no network round-trip when everything asked for is already cached
        root = Path(
            snapshot_download(
                repo_id,
                cache_dir=cache_dir,
                allow_patterns=patterns,
                ignore_patterns=HUB_IGNORE,
                local_files_only=True,
            )
        )
        if all((root / p).exists() for p in wanted) and all(
            any((root / p.split("/")[0]).glob("*.onnx")) for p in patterns if "*" in p
        ):
            return root
    except Exception:  # not cached (or partly): fall through to the download
        pass
    hint = (
        f"Download it where the internet is reachable (`hf download {repo_id} --local-dir DIR`) "
        f"and set IB_MODEL=DIR, or check HF_ENDPOINT / proxy settings."
    )
    try:
        log.info("downloading %s (%s) into %s", repo_id, ", ".join(patterns), cache_dir)
        return Path(
            snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=patterns, ignore_patterns=HUB_IGNORE)
        )
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as exc:
        raise ModelUnavailable(
            f"model {repo_id!r} was not found on the Hugging Face hub ({type(exc).__name__}). "
            f"Use a repo in Immich's layout such as immich-app/ViT-B-32__openai, or a local "
            f"directory. {hint}"
        ) from None
    except Exception as exc:  # connection refused, DNS, timeouts, offline mode: all mean "cannot fetch"
        detail = " ".join(str(exc).split()).rstrip(".")
        raise ModelUnavailable(
            f"cannot download model {repo_id!r} from the Hugging Face hub: {type(exc).__name__}: {detail}. {hint}"
        ) from None
