"""One way to make AWS clients: region and credentials from the settings' sources first.

`AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
`AWS_SESSION_TOKEN` are read from the process environment or `config.txt` (the settings'
`source`), so both places work for Secrets Manager and Bedrock alike; anything not given there
comes from boto3's own chain (the ECS task role in a deployment).

Every client of a process comes from one session per region and credentials (`client`): a
session loads botocore's data files (its endpoint table alone is several MiB of objects), so a
second session for Secrets Manager beside Bedrock's would hold them twice in every worker.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

_sessions: dict[tuple[str | None, ...], Any] = {}
# boto3 sessions may not create clients concurrently (using the clients is safe); creating one can
# wait on the network (the task role's credentials), which lets another greenlet run meanwhile.
_lock = threading.Lock()


def region(source: Mapping[str, str]) -> str | None:
    """The region the settings name: AWS_REGION (what the SDKs and ECS set), else AWS_DEFAULT_REGION."""
    return source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION") or None


def session(source: Mapping[str, str]) -> Any:
    """A boto3 session with the region and (when both keys are given) the credentials of `source`."""
    import boto3

    credentials = {}
    if source.get("AWS_ACCESS_KEY_ID") and source.get("AWS_SECRET_ACCESS_KEY"):
        credentials = {
            "aws_access_key_id": source["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": source["AWS_SECRET_ACCESS_KEY"],
            "aws_session_token": source.get("AWS_SESSION_TOKEN") or None,
        }
    return boto3.session.Session(region_name=region(source), **credentials)


def client(source: Mapping[str, str], service_name: str, **options: Any) -> Any:
    """A boto3 client of `service_name` (`options` as `Session.client` takes them), made from this
    process's session for the region and credentials of `source`."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    key = (region(source), *(source.get(name) or None for name in names))
    with _lock:
        found = _sessions.get(key)
        if found is None:
            found = _sessions[key] = session(source)
        return found.client(service_name, **options)
