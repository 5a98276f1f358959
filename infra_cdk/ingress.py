"""How requests reach the service: the environment's DNS zone, its certificate, and the ALB.

The environment gets a hosted zone of its own (`aiproxy-dev-b.example.org`), delegated from the
base zone by an NS record: a branch stack owns every record it creates, and deleting the stack
removes its one record (the delegation) from the shared zone.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra_cdk.nag import acknowledge

ACCESS_LOG_PREFIX = "alb"


class Ingress(Construct):
    """Exposes `zone`, `certificate`, `load_balancer`, `https_listener` (the only listener: plain
    HTTP is refused), `delegation` and `access_logs` (the bucket of the load balancer's access
    logs)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        dns_name: str,
        base_domain: str,
        base_hosted_zone_id: str,
        idle_timeout: Duration,
        access_log_retention: Duration,
        deletion_protection: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.zone = route53.PublicHostedZone(self, "Zone", zone_name=dns_name)
        base_zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "BaseZone", hosted_zone_id=base_hosted_zone_id, zone_name=base_domain
        )
        self.delegation = route53.NsRecord(
            self,
            "Delegation",
            zone=base_zone,
            record_name=dns_name,
            values=self.zone.hosted_zone_name_servers or [],
            ttl=Duration.hours(1),
        )
        self.certificate = acm.Certificate(
            self,
            "Certificate",
            domain_name=dns_name,
            validation=acm.CertificateValidation.from_dns(self.zone),
        )
        # ACM validates through public DNS, which finds the new zone only once it is delegated.
        self.certificate.node.add_dependency(self.delegation)

        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            idle_timeout=idle_timeout,
            drop_invalid_header_fields=True,
            deletion_protection=deletion_protection,
        )
        # ALB access logs support SSE-S3 only. Kept when the stack is deleted (a bucket that still
        # holds logs cannot be deleted by CloudFormation); the lifecycle rule empties it.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=access_log_retention, noncurrent_version_expiration=Duration.days(1)
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This bucket holds the load balancer's access logs; logging access to it would need "
            "another bucket without logs of its own, and CloudTrail records its management calls.",
        )
        self.load_balancer.log_access_logs(self.access_logs, prefix=ACCESS_LOG_PREFIX)
        self.https_listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_certificate_manager(self.certificate)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=True,
        )
        # No listener on port 80, not even a redirect: a client that sends its key to http:// has
        # leaked it before any redirect, and clients do not follow redirects of POST bodies well.
        # Plain HTTP is refused outright (the security group does not open port 80).
        for security_group in self.load_balancer.connections.security_groups:
            acknowledge(
                security_group,
                "AwsSolutions-EC23",
                "A public HTTPS API: the load balancer accepts 443 only, from anywhere; clients "
                "authenticate with their keys.",
            )
        self.alias = route53.ARecord(
            self,
            "Alias",
            zone=self.zone,
            target=route53.RecordTarget.from_alias(targets.LoadBalancerTarget(self.load_balancer)),
        )
