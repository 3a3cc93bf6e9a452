"""One settings object, read from `IB_*` environment variables (and an optional `.env`).

Every field here is listed in docs/configuration.md's table; `tests/unit/test_config.py` checks that
the table and this class agree.
"""

from __future__ import annotations

import fnmatch
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODEL = "immich-app/ViT-B-32__openai"
# hnsw.ef_search up to 100,000 rows (grown above: shared/store/hnsw.py), from bench/bench_tradeoff.py's table.
DEFAULT_HNSW_EF_SEARCH = 80


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the variable and what is expected."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IB_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Database
    database_url: str | None = Field(
        None, description="PostgreSQL URL (postgresql://user:pass@host:port/db). Empty: embedded server."
    )
    data_dir: Path = Field(Path(".data"), description="Where the embedded PostgreSQL keeps its data.")

    # Object storage
    bucket: str = Field("photos", description="Default bucket, and so the default collection.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (moto, MinIO). Empty: AWS.")
    s3_region: str = Field("us-east-1", description="Region for S3 requests and presigning.")
    s3_access_key_id: str | None = Field(None, description="Access key; empty: boto3's default chain.")
    s3_secret_access_key: str | None = Field(None, description="Secret key; empty: boto3's default chain.")
    r2_account_id: str | None = Field(
        None, description="Cloudflare account id: use R2 at https://<id>.r2.cloudflarestorage.com."
    )
    r2_queue_id: str | None = Field(
        None, description="Cloudflare Queue id receiving the R2 bucket's event notifications (r2_pull)."
    )
    cloudflare_api_token: str | None = Field(
        None, description="Cloudflare API token with Queues Edit permission (r2_pull pulls and acks)."
    )
    cloudflare_api_url: str = Field(
        "https://api.cloudflare.com/client/v4", description="Cloudflare API base URL (tests use a local one)."
    )
    r2_pull_batch_size: int = Field(10, ge=1, le=100, description="Messages per Cloudflare Queue pull.")
    r2_pull_visibility_timeout_ms: int = Field(
        600_000,
        ge=1000,
        le=43_200_000,
        description="Lease of pulled messages, ms; longer than processing one batch takes.",
    )
    work_queue_url: str | None = Field(
        None, description="SQS queue the backfill fans bulk work out on (the embed queue); empty: it embeds in process."
    )
    ocr_queue_url: str | None = Field(
        None, description="SQS queue of the OCR stage (the embed function sends it the pictures it embedded)."
    )
    faces_queue_url: str | None = Field(
        None, description="SQS queue of the faces stage (the embed function sends it the pictures it embedded)."
    )
    thumbnail_prefix: str = Field(".thumbnails/", description="Key prefix for thumbnails; never embedded.")
    thumbnail_size: int = Field(384, ge=32, le=4096, description="Longest side of a WebP thumbnail, pixels.")
    public_base_url: str | None = Field(
        None, description="Public URL of the bucket (CDN); empty: presigned URLs are handed out."
    )
    presign_expiry_seconds: int = Field(
        3600, ge=60, le=604800, description="Lifetime of presigned URLs. An image keeps the same URL for a quarter "
        "of it (signed at that window's start), so browsers reuse what they loaded; each URL handed out has at least "
        "three quarters of its lifetime left."
    )

    # Model
    model: str = Field(
        DEFAULT_MODEL,
        description="The models this deployment holds, comma-separated; the first is the default for new "
        "collections. Each: a Hugging Face repo in Immich's layout, a local directory (or a folder of them), "
        "or replicate:krthr/clip-embeddings.",
    )
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "image-browser" / "models", description="Where downloaded models are kept."
    )
    model_threads: int = Field(
        0, ge=0, le=256,
        description="ONNX Runtime threads per model call; 0: one per core for texts, one per call for images "
        "(image batches then run side by side, see IB_EMBED_PARALLEL).",
    )
    embed_parallel: int = Field(
        0, ge=0, le=64,
        description="Image batches embedded at the same time; 0: one per core. Side-by-side single-threaded "
        "calls keep the cores busy while decoding and I/O share them.",
    )
    model_quantized: bool = Field(False, description="Use int8-quantised ONNX models (built on first use).")
    replicate_api_token: str | None = Field(None, description="Replicate API token (for replicate: models).")
    replicate_base_url: str = Field("https://api.replicate.com", description="Replicate API base URL.")
    replicate_concurrency: int = Field(4, ge=1, le=64, description="Concurrent Replicate predictions.")

    # Ingestion
    embed_batch_size: int = Field(16, ge=1, le=1024, description="Images embedded per model call.")
    backfill_batch_size: int = Field(64, ge=1, le=10000, description="Rows claimed per backfill round.")
    backfill_concurrency: int = Field(4, ge=1, le=64, description="Parallel S3 reads during backfill.")
    max_attempts: int = Field(3, ge=1, le=100, description="Attempts before a failed image is left alone.")
    max_image_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest object read for embedding, bytes."
    )
    max_image_pixels: int = Field(
        100_000_000, ge=1, description="Largest image decoded, pixels (decompression-bomb guard)."
    )

    # OCR: the words in pictures, read by a stage of its own after embedding
    ocr: bool = Field(True, description="Read the words in pictures (the OCR stage); false turns it off.")
    ocr_min_score: float = Field(
        0.8, ge=0.0, le=1.0, description="Recognition confidence a line of text needs to be kept (Immich's 0.8)."
    )
    ocr_detect_side: int = Field(
        736, ge=128, le=4096,
        description="Longest side of the text-detection pass, pixels: smaller is faster and misses smaller text.",
    )
    ocr_parallel: int = Field(
        0, ge=0, le=64, description="Pictures the OCR stage reads at the same time; 0: one per core."
    )

    # Faces: found, described and grouped into people by a stage of its own after embedding (docs/people.md).
    # Boxes and face descriptors are biometric data: `false` stops the stage; `image-browser faces --forget`
    # deletes what it stored.
    faces: bool = Field(True, description="Find faces and group them into people (the faces stage); false turns "
                        "it off.")
    faces_parallel: int = Field(
        0, ge=0, le=64, description="Pictures the faces stage reads at the same time; 0: one per core."
    )

    # Duplicates (GET /api/duplicates, collapse=near): cosine distances, at most shared/search/duplicates.py RADIUS;
    # a request may pass its own
    duplicates_near_distance: float = Field(
        0.01, gt=0.0, le=0.15, description="Cosine distance up to which images are near-duplicates (Immich's 0.01)."
    )
    duplicates_similar_distance: float = Field(
        0.06, gt=0.0, le=0.15,
        description="Cosine distance up to which images are similar shots (clip-retrieval's 0.94 similarity).",
    )

    # API
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest search-by-image upload.")
    hnsw_ef_search: int = Field(
        DEFAULT_HNSW_EF_SEARCH, ge=1, le=1000, description="pgvector hnsw.ef_search up to 100,000 photos, grown "
        "with the collection's size above (186 at a million): higher finds more true neighbours, slower."
    )
    api_key: str | None = Field(None, description="If set, API requests need it (Bearer or x-api-key).")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS (* for any)."
    )
    query_cache_size: int = Field(1024, ge=0, description="Text-query embeddings kept in the LRU cache.")
    # Search: the floor of the adaptive cutoff (shared/search/hybrid.py), per model
    search_floor: float = Field(
        0.2, ge=-1.0, le=1.0,
        description="Cosine similarity a picture match needs at least (cutoff=auto), for models IB_SEARCH_FLOORS "
        "does not list; suits OpenAI CLIP models.",
    )
    search_floors: dict[str, Annotated[float, Field(ge=-1.0, le=1.0)]] = Field(
        default_factory=lambda: {"*SigLIP*": 0.05, "test/*": -1.0},
        description="JSON object: model id (or a glob over it) -> its floor; the exact id wins, then the longest "
        "glob. SigLIP models score lower; the random test models have none (-1).",
    )

    # Secrets by name, read at run time (shared/secrets.py): an SSM parameter, or secretsmanager:<name or ARN>.
    # A plain value of the same setting (e.g. IB_DATABASE_URL) wins.
    database_url_parameter: str | None = Field(None, description="Where to read IB_DATABASE_URL (deployed).")
    api_key_parameter: str | None = Field(None, description="Where to read IB_API_KEY; no such parameter: open API.")
    replicate_api_token_parameter: str | None = Field(None, description="Where to read IB_REPLICATE_API_TOKEN.")
    cloudflare_api_token_parameter: str | None = Field(None, description="Where to read IB_CLOUDFLARE_API_TOKEN.")
    s3_access_key_id_parameter: str | None = Field(None, description="Where to read IB_S3_ACCESS_KEY_ID (R2).")
    s3_secret_access_key_parameter: str | None = Field(
        None, description="Where to read IB_S3_SECRET_ACCESS_KEY (R2)."
    )

    # Local stack
    host: str = Field("127.0.0.1", description="Address the local stack listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the API and gallery (make dev).")
    s3_port: int = Field(9000, ge=1, le=65535, description="Port of the local S3/SQS server (make dev).")
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("thumbnail_prefix")
    @classmethod
    def _prefix_ends_with_slash(cls, value: str) -> str:
        if not value or value.startswith("/"):
            raise ValueError("must be a non-empty key prefix such as '.thumbnails/'")
        return value if value.endswith("/") else value + "/"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def image_model_calls(self) -> int:
        """How many image batches run at once (IB_EMBED_PARALLEL, 0 = one per core)."""
        return self.embed_parallel or os.cpu_count() or 1

    @property
    def ocr_calls(self) -> int:
        """How many pictures the OCR stage reads at once (IB_OCR_PARALLEL, 0 = one per core)."""
        return self.ocr_parallel or os.cpu_count() or 1

    @property
    def faces_calls(self) -> int:
        """How many pictures the faces stage reads at once (IB_FACES_PARALLEL, 0 = one per core)."""
        return self.faces_parallel or os.cpu_count() or 1

    def search_floor_for(self, model_id: str) -> float:
        """The cutoff floor of a model: IB_SEARCH_FLOORS by exact id, else its longest matching glob, else
        IB_SEARCH_FLOOR."""
        if model_id in self.search_floors:
            return self.search_floors[model_id]
        globs = [pattern for pattern in self.search_floors if fnmatch.fnmatchcase(model_id, pattern)]
        return self.search_floors[max(globs, key=len)] if globs else self.search_floor

    @property
    def s3_endpoint(self) -> str | None:
        if self.s3_endpoint_url:
            return self.s3_endpoint_url
        if self.r2_account_id:
            return f"https://{self.r2_account_id}.r2.cloudflarestorage.com"
        return None


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a wrong value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "IB_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


LOCAL_STACK_STATE = "stack.json"  # under IB_DATA_DIR while `make dev` runs: where its services listen


def use_local_stack() -> bool:
    """Point the command line at a running `make dev` stack: the IB_* variables it leaves unset are taken
    from IB_DATA_DIR/stack.json (database, S3 endpoint and keys, queues). Whether a stack was found."""
    path = Path(os.environ.get("IB_DATA_DIR") or Settings.model_fields["data_dir"].default) / LOCAL_STACK_STATE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    for name, value in found.items():
        variable = "IB_" + str(name).upper()
        if isinstance(value, str) and variable in {"IB_" + field.upper() for field in Settings.model_fields}:
            os.environ.setdefault(variable, value)
    get_settings.cache_clear()
    return True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (Lambda containers and the local stack), with the secrets
    named by IB_*_PARAMETER read from SSM / Secrets Manager."""
    from shared.secrets import with_secrets

    return with_secrets(load_settings())
