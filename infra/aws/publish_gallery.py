"""Write web/config.json from the stack's outputs and upload the gallery to its bucket behind CloudFront.

    python infra/aws/publish_gallery.py --stack image-browser-dev --region us-east-1 [--direct-api] [--dry-run]

By default the gallery calls the API on its own origin (CloudFront routes /api/* to the HTTP API), so
`apiBase` is empty; `--direct-api` points it at the HTTP API URL instead (then add the gallery's URL to
the `corsOrigins` param). Uploads set content types and cache headers, then invalidate CloudFront.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from pathlib import Path
from typing import Any

import boto3

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
REQUIRED_OUTPUTS = ("GalleryBucketName", "GalleryDistributionId", "GalleryUrl", "HttpApiUrl")


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """The stack's outputs as {key: value}; names the missing ones if the stack is not this one."""
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as exc:  # botocore's ClientError; the message is what matters here
        raise SystemExit(f"cannot read stack {stack!r}: {exc}. Deploy it first (docs/deploy-aws.md).") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise SystemExit(f"stack {stack!r} has no outputs {missing}: is it an image-browser stack?")
    return outputs


def gallery_config(outputs: dict[str, str], existing: dict[str, Any], direct_api: bool) -> dict[str, Any]:
    """config.json for web/app.js: keeps the file's other keys (collection, pageSize)."""
    config = dict(existing)
    config["apiBase"] = outputs["HttpApiUrl"].rstrip("/") if direct_api else ""
    config.setdefault("collection", "")
    config.setdefault("pageSize", 30)
    return config


def upload(s3: Any, bucket: str, web_dir: Path, config: dict[str, Any]) -> list[str]:
    """Upload every file of web/ (config.json from `config`); returns the keys written."""
    keys = []
    for path in sorted(p for p in web_dir.rglob("*") if p.is_file()):
        key = path.relative_to(web_dir).as_posix()
        body = json.dumps(config, indent=2).encode() if key == "config.json" else path.read_bytes()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        # Static files may be cached briefly; config.json is never cached (CloudFront does the same).
        cache = "no-cache" if key in {"config.json", "index.html"} else "public, max-age=300"
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, CacheControl=cache)
        keys.append(key)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="image-browser-dev", help="CloudFormation stack name")
    parser.add_argument("--region", default=None, help="AWS region of the stack")
    parser.add_argument("--direct-api", action="store_true", help="call the HTTP API URL, not /api/")
    parser.add_argument("--web-dir", type=Path, default=WEB_DIR)
    parser.add_argument("--dry-run", action="store_true", help="only write web/config.json")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    outputs = stack_outputs(session.client("cloudformation"), args.stack)
    config_path = args.web_dir / "config.json"
    existing = json.loads(config_path.read_text()) if config_path.exists() else {}
    config = gallery_config(outputs, existing, args.direct_api)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {config_path}: {config}")
    if args.dry_run:
        return 0
    keys = upload(session.client("s3"), outputs["GalleryBucketName"], args.web_dir, config)
    print(f"uploaded {len(keys)} files to s3://{outputs['GalleryBucketName']}/")
    session.client("cloudfront").create_invalidation(
        DistributionId=outputs["GalleryDistributionId"],
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": str(time.time())},
    )
    print(f"gallery: {outputs['GalleryUrl']} (CloudFront takes a minute or two to refresh)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
