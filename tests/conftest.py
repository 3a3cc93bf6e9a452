import os

# Tests never reach a model hub; a test that needs a model builds the repo's test model.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.model", "tests.fixtures.text_images"]
