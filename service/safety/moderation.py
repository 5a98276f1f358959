"""The moderation check: an OpenAI-compatible `/v1/moderations` call through the proxy's routing.

Flagged when any category's score reaches the check's `threshold` (or that category's own, in
`thresholds`); with neither, when the provider itself says `flagged`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from service.safety.calls import relayed
from service.safety.check import PASSED, Check, CheckFailed, Outcome, Services, known_fields, number, text
from service.safety.check import timeout as timeout_of


@dataclass(frozen=True)
class Moderation(Check):
    kind: ClassVar[str] = "moderation"
    model: str = ""
    threshold: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def run(self, text: str, services: Services) -> Outcome:
        return self.judged(text, services)

    def judged(
        self, moderated: str | list[dict[str, Any]], services: Services, *, cached: bool = True
    ) -> Outcome:
        """The outcome for `moderated`: a text, or a list of typed inputs (an image's
        `{"type": "image_url", "image_url": {"url": ...}}`: omni-moderation models accept them)."""
        keep = _scored if cached else None
        data = relayed(services, self.model, "/moderations", {"input": moderated}, kind=self.kind, keep=keep)
        if not _scored(data):
            raise CheckFailed(f"{self.model}: the moderation answer has no results")
        results: list[dict[str, Any]] = data["results"]
        flagged: dict[str, float] = {}
        provider_flagged = False
        for result in results:
            provider_flagged = provider_flagged or result.get("flagged") is True
            scores = result.get("category_scores")
            if not isinstance(scores, dict):
                continue
            for category, score in scores.items():
                if isinstance(score, bool) or not isinstance(score, int | float):
                    continue
                limit = self.thresholds.get(category, self.threshold)
                if limit is not None and score >= limit:
                    flagged[category] = max(flagged.get(category, 0.0), round(float(score), 4))
        if flagged:
            return Outcome(True, tuple(sorted(flagged)), {"scores": flagged})
        if self.threshold is None and not self.thresholds and provider_flagged:
            categories = sorted(
                str(name)[:64]
                for result in results
                for name, on in (result.get("categories") or {}).items()
                if on is True
            )
            return Outcome(True, tuple(categories), {"flagged_by": "provider"})
        return PASSED


@dataclass(frozen=True, eq=False)
class ImageModeration(Check):
    """A policy's moderation check applied to one generated image (a check of its own, so the
    runner runs the images concurrently, each within the check's timeout, as any other)."""

    kind: ClassVar[str] = "moderation"
    moderation: Moderation = Moderation()
    url: str = ""  # an https URL, or a `data:image/png;base64,...` URL
    index: int = 0

    def run(self, text: str, services: Services) -> Outcome:
        image = [{"type": "image_url", "image_url": {"url": self.url}}]
        outcome = self.moderation.judged(image, services, cached=False)  # each image is new: no repeat
        return Outcome(outcome.flagged, outcome.categories, {**outcome.details, "image": self.index})


def _scored(data: dict[str, Any]) -> bool:
    """Whether a moderation answer has results to judge by (only such an answer is kept)."""
    results = data.get("results")
    return isinstance(results, list) and bool(results) and all(isinstance(r, dict) for r in results)


def parse(entry: Mapping[str, Any], where: str) -> Moderation:
    known_fields(entry, where, ("model", "threshold", "thresholds"))
    thresholds = entry.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ValueError(f"{where}: 'thresholds' must be an object of categories to numbers from 0 to 1")
    for category in thresholds:
        number(thresholds, category, f"{where}: thresholds", 0, 1)
    return Moderation(
        timeout=timeout_of(entry, where),
        model=text(entry, "model", where),
        threshold=number(entry, "threshold", where, 0, 1),
        thresholds={str(k): float(v) for k, v in thresholds.items()},
    )
