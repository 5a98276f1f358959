"""One way to make AWS clients: region and credentials from the settings' sources first.

`AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
`AWS_SESSION_TOKEN` are read from the process environment or `config.txt` (the settings'
`source`), so both places work for Secrets Manager and Bedrock alike; anything not given there
comes from boto3's own chain (the ECS task role in a deployment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
