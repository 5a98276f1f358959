"""Builds the stacks of a deployment into a CDK app, and adds the cdk-nag checks."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra_cdk.environments import Deployment
from infra_cdk.pipeline_stack import PipelineStack
from infra_cdk.service_stack import ServiceStack


def _env(deployment: Deployment) -> cdk.Environment:
    return cdk.Environment(account=deployment.config.account, region=deployment.config.region)


def add_service_stacks(app: cdk.App, deployment: Deployment) -> list[ServiceStack]:
    """The service stack of every environment `deployment` names, for `cdk deploy` by hand."""
    return [
        ServiceStack(
            app,
            environment.stack_name,
            stack_name=environment.stack_name,
            environment=environment,
            config=deployment.config,
            env=cdk.Environment(account=environment.account, region=environment.region),
            description=f"AI Proxy {environment.environment_type} environment {environment.dns_name}",
        )
        for environment in deployment.environments
    ]


def add_pipeline_stack(app: cdk.App, deployment: Deployment) -> PipelineStack:
    """The pipeline that tests the branch and deploys the same environments as stages."""
    return PipelineStack(
        app,
        deployment.pipeline_stack_name,
        stack_name=deployment.pipeline_stack_name,
        deployment=deployment,
        env=_env(deployment),
        description=f"AI Proxy {deployment.environment_type} pipeline of branch {deployment.branch}",
    )


def build(app: cdk.App, deployment: Deployment) -> list[cdk.Stack]:
    """Every stack of `deployment`: its environments' service stacks and its pipeline stack."""
    return [*add_service_stacks(app, deployment), add_pipeline_stack(app, deployment)]


def add_checks(app: cdk.App) -> None:
    """Run cdk-nag's AwsSolutions rules at synthesis; an unacknowledged error fails it."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
