"""Bake models into the container image at build time (the Dockerfile runs this; Lambda never downloads).

    python -m shared.embedders.bake "immich-app/ViT-B-32__openai,immich-app/ViT-B-16-SigLIP2__webli" main /opt/models

Each model lands in its own folder, numbered in the order given (`IB_MODEL=/opt/models` then holds them
all, the first being the default for new collections), with only the files the ONNX encoders need.
Its config.json records the hub id as `model_id`, so a collection gets the same model id whether the
model was downloaded at run time (`IB_MODEL=immich-app/…`) or baked.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from shared.embedders import REPLICATE_PREFIX

ONNX_FILES = ["config.json", "visual/model.onnx*", "visual/preprocess_cfg.json", "textual/model.onnx*",
              "textual/*.json", "textual/*.txt"]


def hub_download(repo_id: str, revision: str, folder: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id, revision=revision, local_dir=folder, allow_patterns=ONNX_FILES)


def bake(specs: str, revision: str, target: Path,
         download: Callable[[str, str, Path], None] = hub_download) -> list[Path]:
    """Download every hub model of the comma-separated `specs` under `target`; the folders, in order."""
    names = [item.strip() for item in specs.split(",")]
    repos = [name for name in names if name and not name.startswith(REPLICATE_PREFIX)]  # Replicate: nothing to bake
    folders = []
    for index, repo_id in enumerate(repos):
        folder = target / f"{index:02d}-{repo_id.rsplit('/', 1)[-1]}"
        download(repo_id, revision, folder)
        for required in ("config.json", "visual/model.onnx", "textual/model.onnx"):
            if not (folder / required).is_file():
                raise SystemExit(f"{repo_id}: {required} is missing after the download; is it in Immich's layout?")
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config["model_id"] = repo_id
        config_path.write_text(json.dumps(config, indent=2))
        folders.append(folder)
    return folders


if __name__ == "__main__":  # pragma: no cover - the Dockerfile's build step
    for baked in bake(sys.argv[1], sys.argv[2], Path(sys.argv[3])):
        print(f"baked {baked}")
