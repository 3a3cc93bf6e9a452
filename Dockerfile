# syntax=docker/dockerfile:1
# One image for every function (embed, backfill, api, r2Pull); serverless.yml picks the handler with
# `image.command`. Build for Lambda's architecture (x86_64 unless you set the `architecture` param):
#   docker build --platform linux/amd64 -t image-browser .
# The CLIP model is baked in at build time (README.md, "The container image: model baked in, not fetched").
FROM public.ecr.aws/lambda/python:3.12

# Any model in Immich's layout on Hugging Face; empty or `replicate:…` skips the download.
ARG MODEL=immich-app/ViT-B-32__openai
ARG MODEL_REVISION=main

# Dependencies and the two packages go into the task root, which is on Lambda's sys.path.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY functions/ functions/
RUN pip install --no-cache-dir --target "${LAMBDA_TASK_ROOT}" . \
    && rm -rf /build/*
WORKDIR ${LAMBDA_TASK_ROOT}

# Only the files the ONNX encoders need: no other runtimes' exports, no fp16/ARM variants.
RUN if [ -n "${MODEL}" ] && [ "${MODEL#replicate:}" = "${MODEL}" ]; then \
      PYTHONPATH="${LAMBDA_TASK_ROOT}" python -c "import sys; from huggingface_hub import snapshot_download; \
snapshot_download(sys.argv[1], revision=sys.argv[2], local_dir='/opt/model', \
allow_patterns=['config.json', 'visual/model.onnx*', 'visual/preprocess_cfg.json', \
'textual/model.onnx*', 'textual/*.json', 'textual/*.txt'])" "${MODEL}" "${MODEL_REVISION}" \
      && test -f /opt/model/visual/model.onnx && test -f /opt/model/textual/model.onnx; \
    fi

# Read-only file system at run time, except /tmp; never reach the hub from Lambda.
ENV IB_MODEL=/opt/model \
    IB_MODEL_CACHE_DIR=/tmp/image-browser/models \
    IB_DATA_DIR=/tmp/image-browser/data \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1

CMD ["functions.api.handler"]
