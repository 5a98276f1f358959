"""The pipeline of one branch (CDK Pipelines): source, test and synth, then its environments.

- Source: the GitHub repository's branch, through a CodeStar (CodeConnections) connection.
- Build: `make test`, then `cdk synth` with the context the pipeline was deployed with.
- UpdatePipeline: the pipeline updates itself when its own definition changed.
- production type: Test environment + integration tests, then (after a person approves, unless
  configured off) Production + smoke tests; development type: the branch's one environment +
  smoke tests. A failed step stops the pipeline before the next environment.
- Production may be in another account (of the same region): the artifacts are then encrypted
  with a customer-managed key the other account's deploy role may use (cross_account_keys).
- Notifications of executions started, failed and succeeded, and of approvals waiting, go to an
  SNS topic.
- The CDK CLI and cdk-assets versions the pipeline runs are pinned (CDK_CLI_VERSION,
  CDK_ASSETS_VERSION): a new release cannot change a deployment unreviewed.
- The pull-request check is a separate CodeBuild project (pull_request_build.py).

The deployed tests read a client key from the pipeline's secret `cicd/<pipeline>/test_client_key`
(created empty; an administrator puts in a key whose hash is in each environment's key store).
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import (
    AspectPriority,
    Aspects,
    Duration,
    Environment,
    IAspect,
    RemovalPolicy,
    Stack,
    Stage,
    pipelines,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codestarnotifications as notifications
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct, IConstruct

from infra_cdk.encryption import NOTIFICATIONS_PUBLISHER, StackKey
from infra_cdk.environments import Deployment, ServiceEnvironment
from infra_cdk.nag import AcknowledgeGeneratedGrants, acknowledge, as_list
from infra_cdk.pull_request_build import BUILD_IMAGE, PYTHON_RUNTIME, PullRequestBuild
from infra_cdk.secrets import empty_secret
from infra_cdk.service_stack import ServiceStack

STAGE_NAMES = {"test": "Test", "production": "Production", "development": "Development"}
# The CDK CLI (synth and self-mutation) and cdk-assets (asset publishing) versions the pipeline
# runs. The CLI must be at least as new as aws-cdk-lib (requirements-infra.txt): raise it first,
# let the pipeline update itself, then raise the library (CDK Pipelines' cli_version notes).
CDK_CLI_VERSION = "2.1148.1"
CDK_ASSETS_VERSION = "4.7.3"
APPROVAL_STEP = "Approve"
# The environment the tests run against, and which of them: everything after the test
# environment, the smoke subset after production and development.
DEPLOYED_TESTS_REQUIREMENTS = "tests/deployed/requirements.txt"
INTEGRATION_TESTS = "python -m pytest tests/deployed -n 0 -p no:cacheprovider"
SMOKE_TESTS = "python -m pytest tests/deployed -n 0 -p no:cacheprovider -m smoke"
NOTIFIED_EVENTS = (
    "codepipeline-pipeline-pipeline-execution-started",
    "codepipeline-pipeline-pipeline-execution-failed",
    "codepipeline-pipeline-pipeline-execution-succeeded",
    # so that an approver learns a deployment waits for them
    "codepipeline-pipeline-manual-approval-needed",
)
_PYTHON_BUILD_SPEC = codebuild.BuildSpec.from_object(
    {"phases": {"install": {"runtime-versions": PYTHON_RUNTIME}}}
)


BUILD_ACTIONS = {"codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"}


@jsii.implements(IAspect)
class ScopeAssetBuilds:
    """Aspect: narrow the asset-publishing roles' build grant from every project to their own.

    CDK Pipelines lets each asset role (the service role of the asset projects) start, stop and
    follow builds of any CodeBuild project ("*"); starting another project would run it with
    that project's role. The pipeline starts the asset builds with its own action role, so the
    asset role needs this at most on the projects that run as it. An aspect, so it sees the
    finished policy; it rewrites the policy resource's document (cdk-nag reads that, not overrides).
    """

    def __init__(self, pipeline: pipelines.CodePipeline) -> None:
        self._pipeline = pipeline

    def _projects_of_role(self, stack: Stack) -> dict[str, list[Any]]:
        projects: dict[str, list[Any]] = {}
        for node in self._pipeline.node.find_all():
            if isinstance(node, codebuild.CfnProject) and "/Assets/" in node.node.path:
                role = stack.resolve(node.service_role)["Fn::GetAtt"][0]
                projects.setdefault(role, []).append(node.attr_arn)
        return projects

    def visit(self, node: IConstruct) -> None:
        if not (isinstance(node, iam.CfnPolicy) and "/Assets/" in node.node.path):
            return
        stack = Stack.of(node)
        projects_of_role = self._projects_of_role(stack)
        projects = [
            arn for role in stack.resolve(node.roles) for arn in projects_of_role.get(role["Ref"], [])
        ]
        document = stack.resolve(node.policy_document)
        changed = False
        for statement in document["Statement"]:
            actions = set(as_list(statement["Action"]))
            if statement.get("Resource") == "*" and actions <= BUILD_ACTIONS and projects:
                statement["Resource"] = [stack.resolve(arn) for arn in projects]
                changed = True
        if changed:
            node.policy_document = document


class ServiceStage(Stage):
    """One environment as a pipeline stage; exposes `service_stack`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: ServiceEnvironment,
        deployment: Deployment,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.service_stack = ServiceStack(
            self,
            environment.stack_name,
            stack_name=environment.stack_name,
            environment=environment,
            config=deployment.config,
            description=f"AI Proxy {environment.environment_type} environment {environment.dns_name}",
        )


class PipelineStack(Stack):
    """Exposes `pipeline` (CDK Pipelines), `stages`, `synth_step`, `test_steps`, `topic`,
    `artifact_bucket`, `artifact_key` (cross-account only), `key` (customer-managed keys only),
    `test_key_secret` and `pull_request_build`."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        config = deployment.config
        source = pipelines.CodePipelineSource.connection(
            f"{config.github_owner}/{config.github_repo}",
            deployment.branch,
            connection_arn=config.codestar_connection_arn,
        )
        self.key = (
            StackKey(
                self,
                "Key",
                description=f"AI Proxy pipeline {deployment.pipeline_stack_name}: secret, logs and topic",
                topic_publishers=[NOTIFICATIONS_PUBLISHER],
                removal_policy=RemovalPolicy.DESTROY,
            ).key
            if config.customer_managed_keys
            else None
        )
        # Another account can read artifacts only through a customer-managed key it is granted;
        # without one CodePipeline's default key (aws/s3) stays in this account.
        cross_account = any(
            (environment.account, environment.region) != (config.account, config.region)
            for environment in deployment.environments
        )
        self.artifact_key = (
            kms.Key(self, "ArtifactsKey", description="Pipeline artifacts", enable_key_rotation=True)
            if cross_account
            else None
        )
        self.artifact_bucket = s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.KMS if self.artifact_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.artifact_key,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=Duration.days(30), noncurrent_version_expiration=Duration.days(1))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.artifact_bucket,
            "AwsSolutions-S1",
            "Only the pipeline's own roles read and write this bucket (source and cloud assembly "
            "artifacts, expiring after 30 days); CloudTrail records those calls.",
        )
        self.synth_step = pipelines.CodeBuildStep(
            "Build",
            input=source,
            partial_build_spec=_PYTHON_BUILD_SPEC,
            build_environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM
            ),
            commands=[
                "make test",
                # The venv holds Node.js (for the CDK CLI) and the app's Python packages.
                f'PATH="$PWD/.venv/bin:$PATH" npx -y aws-cdk@{CDK_CLI_VERSION} synth '
                f"{deployment.context_arguments()}",
            ],
            primary_output_directory="cdk.out",
            timeout=Duration.minutes(45),
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            synth=self.synth_step,
            artifact_bucket=self.artifact_bucket,
            cross_account_keys=cross_account,
            self_mutation=True,
            cli_version=CDK_CLI_VERSION,
            cdk_assets_cli_version=CDK_ASSETS_VERSION,
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE)
            ),
        )
        self.test_key_secret = empty_secret(
            self,
            "TestClientKey",
            secret_name=f"cicd/{deployment.pipeline_stack_name}/test_client_key",
            description="Client key the deployed tests send; its hash is in each environment's key store",
            removal_policy=RemovalPolicy.DESTROY,
            encryption_key=self.key,
        )
        acknowledge(
            self.test_key_secret,
            "AwsSolutions-SMG4",
            "The test client key is issued by an administrator with python -m service.keys and "
            "rotated by putting a new value here and its hash in the key stores.",
        )

        self.stages: list[ServiceStage] = []
        self.test_steps: list[pipelines.CodeBuildStep] = []
        for environment in deployment.environments:
            stage = ServiceStage(
                self,
                STAGE_NAMES[environment.environment_type],
                environment=environment,
                deployment=deployment,
                env=Environment(account=environment.account, region=environment.region),
            )
            integration = environment.environment_type == "test"
            tests = self._deployed_tests(
                "IntegrationTests" if integration else "SmokeTests",
                source=source,
                stage=stage,
                command=INTEGRATION_TESTS if integration else SMOKE_TESTS,
            )
            approval = pipelines.ManualApprovalStep(
                APPROVAL_STEP,
                comment=f"Deploy {environment.dns_name}? The environments before it passed their tests.",
            )
            self.pipeline.add_stage(
                stage, pre=[approval] if environment.manual_approval else [], post=[tests]
            )
            self.stages.append(stage)
            self.test_steps.append(tests)

        self.pipeline.build_pipeline()
        if self.key is not None:
            # CodeBuild reads the test key (an environment variable) with the project's role.
            for step in self.test_steps:
                iam.Grant.add_to_principal(
                    grantee=step.project,
                    actions=["kms:Decrypt"],
                    resource_arns=[self.key.key_arn],
                    conditions={
                        "StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}
                    },
                )
        self.topic = sns.Topic(self, "Notifications", enforce_ssl=True, master_key=self.key)
        notifications.NotificationRule(
            self,
            "PipelineEvents",
            source=self.pipeline.pipeline,
            events=list(NOTIFIED_EVENTS),
            targets=[self.topic],
            detail_type=notifications.DetailType.BASIC,
        )
        self.pull_request_build = PullRequestBuild(
            self,
            "PullRequestCheck",
            github_owner=config.github_owner,
            github_repo=config.github_repo,
            branch=deployment.branch,
            connection_arn=config.codestar_connection_arn,
            encryption_key=self.key,
        )
        # Explain the wildcards of the roles CDK Pipelines and CodeBuild generate (nag.py).
        Aspects.of(self.pipeline).add(ScopeAssetBuilds(self.pipeline), priority=AspectPriority.MUTATING)
        Aspects.of(self.pipeline).add(AcknowledgeGeneratedGrants(self.artifact_bucket, self.artifact_key))
        Aspects.of(self.pull_request_build).add(AcknowledgeGeneratedGrants())

    def _deployed_tests(
        self, name: str, *, source: pipelines.CodePipelineSource, stage: ServiceStage, command: str
    ) -> pipelines.CodeBuildStep:
        return pipelines.CodeBuildStep(
            name,
            input=source,
            partial_build_spec=_PYTHON_BUILD_SPEC,
            build_environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE,
                environment_variables={
                    # CodeBuild resolves it at the start of the build; the project's role may
                    # read this one secret and nothing else.
                    "AIPROXY_TEST_KEY": codebuild.BuildEnvironmentVariable(
                        type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER,
                        value=self.test_key_secret.secret_arn,
                    )
                },
            ),
            env_from_cfn_outputs={"AIPROXY_URL": stage.service_stack.url_output},
            install_commands=[f"python -m pip install --quiet -r {DEPLOYED_TESTS_REQUIREMENTS}"],
            commands=[command],
            timeout=Duration.minutes(20),
        )
