"""The Fargate service that runs this repository's Docker image in private subnets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.environments import TaskSize
from infra_cdk.nag import acknowledge

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CONTAINER_PORT = 80
# The image asset holds only what the Dockerfile copies, so its hash (and the deployed image)
# changes only when the service does. A test checks every COPY source is in the asset.
IMAGE_FILES = ("Dockerfile", "requirements.txt", "service")
# The image's server runs as a non-root user on port 80; this namespaced sysctl lets it bind
# there without any capability (Fargate allows the net.* namespaced sysctls).
UNPRIVILEGED_PORT_SYSCTL = ecs.SystemControl(namespace="net.ipv4.ip_unprivileged_port_start", value="0")


# Bytecode Python writes beside the sources (a test run, a local server): never in the image, and
# never in the asset's hash, or every pipeline run after `make test` would build a new image.
BYTECODE = ("**/__pycache__", "**/*.pyc")


def image_asset_excludes() -> list[str]:
    """Docker-ignore patterns that leave only IMAGE_FILES, less bytecode (plus .dockerignore's own
    rules)."""
    return ["*", *(f"!{name}" for name in IMAGE_FILES), *BYTECODE]


class Compute(Construct):
    """Exposes `cluster`, `task_definition`, `container` and `service`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        size: TaskSize,
        environment: Mapping[str, str],
        log_group: logs.ILogGroup,
        stop_timeout: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=size.cpu,
            memory_limit_mib=size.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(REPOSITORY_ROOT),
            exclude=image_asset_excludes(),
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        self.container = self.task_definition.add_container(
            "aiproxy",
            image=ecs.ContainerImage.from_docker_image_asset(image),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
            environment=dict(environment),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="aiproxy", log_group=log_group),
            system_controls=[UNPRIVILEGED_PORT_SYSCTL],
            stop_timeout=stop_timeout,
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "Only non-secret settings are in the environment (DNS name, environment type, log "
            "format); keys are read at run time from Secrets Manager.",
        )
        acknowledge(
            self.task_definition.obtain_execution_role(),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; pulling layers is "
            "limited to the image asset's repository and logging to the service's log group.",
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            # No desired count: CloudFormation would set it back on every deploy, undoing a
            # scale-out; autoscaling's min_capacity (service_stack.py) keeps the floor.
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            # Start new tasks before stopping old ones: no capacity dip during a deployment.
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=Duration.seconds(60),
        )
