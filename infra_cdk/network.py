"""The VPC the service runs in: its own (two AZs, public + private subnets) or an existing one."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.environments import ExistingVpc


class Network(Construct):
    """Exposes `vpc`: public subnets for the load balancer, private ones (with NAT) for tasks."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        availability_zones: tuple[str, ...],
        nat_gateways: int,
        existing_vpc: ExistingVpc | None = None,
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc: ec2.IVpc
        if existing_vpc is not None:
            # By attributes, not Vpc.from_lookup: synthesis stays offline and reproducible.
            self.vpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=existing_vpc.vpc_id,
                availability_zones=list(existing_vpc.availability_zones),
                public_subnet_ids=list(existing_vpc.public_subnet_ids),
                private_subnet_ids=list(existing_vpc.private_subnet_ids),
            )
            return
        vpc = ec2.Vpc(
            self,
            "Vpc",
            availability_zones=list(availability_zones),
            # Per environment type (environments/table.py): one per AZ in production, so tasks in
            # either AZ keep reaching the LLM provider when the other AZ fails; one shared
            # elsewhere, since each holds one of the region's few Elastic IPs.
            nat_gateways=min(nat_gateways, len(availability_zones)),
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
            ],
        )
        self.flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=flow_log_retention,
            removal_policy=removal_policy,
            encryption_key=encryption_key,
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        self.vpc = vpc
