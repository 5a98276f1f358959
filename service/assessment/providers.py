"""The grader's seam to the providers, shared by POST /assessment and the accuracy lab.

`Grading` resolves the request's model as every route does (aliases, model groups, prefixes:
`service.gateway.routing`) and is the `complete` callable the grader calls: each call tries the model's
deployments in order (`service.gateway.fallback`) and remembers which one answered, for the answer's
`metadata.agent`.
"""

from __future__ import annotations

from typing import Any

from service.gateway.fallback import first_answer
from service.gateway.routing import Deployment, Router


class Grading:
    def __init__(self, router: Router, model: str, *, api_key: str | None = None) -> None:
        self.router = router
        self.deployments = router.deployments(model)
        self.api_key = api_key
        self.answered_by: Deployment | None = None

    @property
    def model(self) -> str:
        """The model graded, as the request reports it (an alias resolved to its first deployment)."""
        return self.deployments[0].routed_name

    @property
    def agent(self) -> str:
        """Which kind of provider answered (`openai` or `bedrock`): `metadata.agent`."""
        return (self.answered_by or self.deployments[0]).provider.agent

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        def attempt(deployment: Deployment, last: bool) -> dict[str, Any]:
            body_for = {**body, "model": deployment.model}
            return deployment.provider.complete(body_for, api_key=self.api_key, retries=None if last else 0)

        self.answered_by, answer = first_answer(self.router, self.deployments, attempt)
        return answer
