"""The comprehend check: Amazon Comprehend's `DetectToxicContent`, through `service.config.aws`.

The text goes in segments of at most 250 characters (Comprehend takes at most 1 KB of UTF-8 per
segment and 10 segments per call); flagged when a segment's overall `Toxicity`, or any of its
labels, reaches the check's `threshold`. The task needs `comprehend:DetectToxicContent` (the CDK
grants it when a policy uses this check); AWS_ENDPOINT_URL_COMPREHEND points it elsewhere (tests).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from service.config import aws
from service.safety.check import PASSED, Check, CheckFailed, Outcome, Services, known_fields, number, text
from service.safety.check import timeout as timeout_of

SEGMENT_CHARS = 250  # at most 4 bytes a character: within Comprehend's 1 KB a segment
SEGMENTS_PER_CALL = 10
LANGUAGES = ("en",)  # what DetectToxicContent accepts

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def _client(source: Mapping[str, str], seconds: float) -> Any:
    """One Comprehend client per region and timeout in this process (making one is not cheap)."""
    key = (aws.region(source), seconds)
    with _lock:
        client = _clients.get(key)
        if client is None:
            from botocore.config import Config

            config = Config(connect_timeout=2, read_timeout=seconds, retries={"max_attempts": 1})
            client = _clients[key] = aws.client(source, "comprehend", config=config)
        return client


@dataclass(frozen=True)
class Comprehend(Check):
    kind: ClassVar[str] = "comprehend"
    threshold: float = 0.5
    language: str = "en"

    def run(self, text: str, services: Services) -> Outcome:
        segments = [text[i : i + SEGMENT_CHARS] for i in range(0, len(text), SEGMENT_CHARS)] or [" "]
        client = _client(services.source, self.timeout)
        toxicity = 0.0
        labels: dict[str, float] = {}  # label -> its highest score over the segments
        for start in range(0, len(segments), SEGMENTS_PER_CALL):
            batch = [{"Text": segment} for segment in segments[start : start + SEGMENTS_PER_CALL]]
            try:
                answer = client.detect_toxic_content(TextSegments=batch, LanguageCode=self.language)
            except Exception as error:  # botocore raises many kinds; each is a failed check
                code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
                raise CheckFailed(f"Comprehend: {code}") from None
            for result in answer.get("ResultList") or []:
                toxicity = max(toxicity, float(result.get("Toxicity") or 0.0))
                for label in result.get("Labels") or []:
                    name, score = str(label.get("Name", ""))[:64], float(label.get("Score") or 0.0)
                    labels[name] = max(labels.get(name, 0.0), round(score, 4))
        over = {name: score for name, score in labels.items() if score >= self.threshold}
        if toxicity >= self.threshold or over:
            details = {"toxicity": round(toxicity, 4), "scores": over}
            return Outcome(True, tuple(sorted(over)) or ("toxicity",), details)
        return PASSED


def parse(entry: Mapping[str, Any], where: str) -> Comprehend:
    known_fields(entry, where, ("threshold", "language"))
    language = text(entry, "language", where, default="en")
    if language not in LANGUAGES:
        raise ValueError(f"{where}: 'language' must be one of: {', '.join(LANGUAGES)}")
    return Comprehend(
        timeout=timeout_of(entry, where),
        threshold=number(entry, "threshold", where, 0, 1, 0.5),  # type: ignore[arg-type]
        language=language,
    )
