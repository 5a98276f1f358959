"""The pull-request check: `make test` on every pull request into the branch, with no AWS rights.

A CodeBuild project with a GitHub webhook, separate from the pipeline: a pull request's code is
untrusted, so its build may not deploy, read secrets or assume any role; it may only write its
own logs and report the result back to GitHub. Pull requests from forks (anyone's code) are not
built until a maintainer comments `/codebuild_run(<commit>)` on them (the webhook's
PullRequestBuildPolicy); those from the repository's own branches build at once.
"""

from __future__ import annotations

from aws_cdk import Arn, ArnFormat, Duration, RemovalPolicy
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.nag import acknowledge, cfn_resource

PULL_REQUEST_EVENTS = (
    codebuild.EventAction.PULL_REQUEST_CREATED,
    codebuild.EventAction.PULL_REQUEST_UPDATED,
    codebuild.EventAction.PULL_REQUEST_REOPENED,
)
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# The runtime `make test` needs (the project's Python; Node.js comes from the venv).
PYTHON_RUNTIME = {"python": "3.11"}
# Fork pull requests wait for a comment from someone who may write to the repository anyway.
FORK_PULL_REQUEST_POLICY = {
    "RequiresCommentApproval": "FORK_PULL_REQUESTS",
    "ApproverRoles": ["GITHUB_WRITE", "GITHUB_MAINTAIN", "GITHUB_ADMIN"],
}


def connection_actions(connection_arn: str) -> list[str]:
    """The actions that let CodeBuild use a GitHub connection (CodeConnections, or CodeStar
    Connections for ARNs of the older service name)."""
    service = Arn.split(connection_arn, ArnFormat.SLASH_RESOURCE_NAME).service
    return [f"{service}:GetConnectionToken", f"{service}:GetConnection", f"{service}:UseConnection"]


class PullRequestBuild(Construct):
    """Exposes `project` (the CodeBuild project), `connection_policy` and `log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        github_owner: str,
        github_repo: str,
        branch: str,
        connection_arn: str,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
            encryption_key=encryption_key,
        )
        self.project = codebuild.Project(
            self,
            "Project",
            description=f"make test on pull requests into {branch}",
            source=codebuild.Source.git_hub(
                owner=github_owner,
                repo=github_repo,
                webhook=True,
                report_build_status=True,
                webhook_filters=[
                    codebuild.FilterGroup.in_event_of(*PULL_REQUEST_EVENTS).and_base_ref_is(
                        f"^refs/heads/{branch}$"
                    )
                ],
            ),
            environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM
            ),
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "install": {"runtime-versions": PYTHON_RUNTIME},
                        "build": {"commands": ["make test"]},
                    },
                }
            ),
            timeout=Duration.minutes(30),
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
            ),
        )
        # Clone and report status through the GitHub connection, not stored account credentials.
        cfn_resource(self.project).add_property_override(
            "Source.Auth", {"Type": "CODECONNECTIONS", "Resource": connection_arn}
        )
        # The L2 GitHub source has no option for it (aws-cdk-lib 2.275); CloudFormation does.
        cfn_resource(self.project).add_property_override(
            "Triggers.PullRequestBuildPolicy", FORK_PULL_REQUEST_POLICY
        )
        # CodeBuild checks that the role may use the connection when it creates the project and
        # its webhook, so the grant is a policy of its own that the project waits for (in the
        # role's default policy it could arrive after the project).
        role = self.project.role
        assert role is not None, "a project created without a role makes its own"
        self.connection_policy = iam.Policy(
            self,
            "ConnectionPolicy",
            statements=[
                iam.PolicyStatement(actions=connection_actions(connection_arn), resources=[connection_arn])
            ],
            roles=[role],
        )
        cfn_resource(self.project).add_resource_dependency(cfn_resource(self.connection_policy))
        acknowledge(
            self.project,
            "AwsSolutions-CB4",
            "The project produces no artifacts and keeps nothing but its logs (CloudWatch); there "
            "is no build output for a customer-managed key to protect.",
        )
