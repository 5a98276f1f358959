"""The service stack of each environment, checked on the synthesized templates (issue 6)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from infra_cdk import snapshots
from infra_cdk.app import build
from infra_cdk.environments import Deployment, config_from_context
from service.config.secrets import SECRET_NAMES, SecretStore, secret_id
from service.config.settings import SETTINGS
from tests.support.templates import only

CONFIG = config_from_context(snapshots.cdk_json_context().get)  # the examples' configuration
DEV = "aiproxy-dev-example-branch"
# stack -> (ENVIRONMENT_TYPE, DNS name, min tasks, max tasks, log retention days)
ENVIRONMENTS = {
    "aiproxy-test": ("test", "aiproxy-test.example.org", 1, 2, 30),
    "aiproxy": ("production", "aiproxy.example.org", 2, 6, 365),
    DEV: ("development", "aiproxy-dev-example-branch.example.org", 1, 2, 7),
}
# stack -> NAT gateways (each with an Elastic IP) of its own VPC
NAT_GATEWAYS = {"aiproxy-test": 1, "aiproxy": 2, DEV: 1}
# stack -> (account, base zone it is delegated from): cdk.json puts production in another account.
PLACEMENT = {
    "aiproxy-test": (CONFIG.account, CONFIG.hosted_zone_id),
    "aiproxy": (CONFIG.production_account, CONFIG.production_hosted_zone_id),
    DEV: (CONFIG.account, CONFIG.hosted_zone_id),
}
SETTING_DEFAULTS = {s.env: s.default for s in SETTINGS}


@pytest.fixture(scope="module")
def templates(template_json) -> dict[str, Template]:
    return {stack: Template.from_json(template_json(stack)) for stack in ENVIRONMENTS}


@pytest.fixture(scope="module")
def raw(template_json) -> dict[str, dict]:
    return {stack: template_json(stack) for stack in ENVIRONMENTS}


def deployed_stack_names(outdir: Path) -> dict[str, str]:
    """Stack path in the app -> the CloudFormation stack name `cdk deploy` (or the pipeline)
    creates, from the cloud assembly manifests: `stackName`, else the artifact id."""
    names: dict[str, str] = {}
    manifest = json.loads((outdir / "manifest.json").read_text())
    for artifact_id, artifact in manifest["artifacts"].items():
        properties = artifact.get("properties", {})
        if artifact["type"] == "aws:cloudformation:stack":
            names[artifact.get("displayName", artifact_id)] = properties.get("stackName", artifact_id)
        elif artifact["type"] == "cdk:cloud-assembly":
            names.update(deployed_stack_names(outdir / properties["directoryName"]))
    return names


@pytest.fixture(scope="module")
def other_branch_stack_names(tmp_path_factory) -> dict[str, str]:
    # The examples cover main and a development branch; docs/deploying.md also names a production
    # pipeline of another branch. Synthesized here without the cdk-nag checks (names only).
    outdir = tmp_path_factory.mktemp("production-b1")
    app = cdk.App(outdir=str(outdir), context=snapshots.cdk_json_context(), analytics_reporting=False)
    build(app, Deployment(environment_type="production", branch="b1", config=CONFIG))
    app.synth()
    return deployed_stack_names(outdir)


def test_deployed_stack_names_follow_spec_section_8(synth_dir, other_branch_stack_names):
    # Each environment is a stack of its own for `cdk deploy` and a stage stack of the pipeline;
    # both must create the CloudFormation stack docs/deploying.md names.
    assert deployed_stack_names(synth_dir) == {
        "aiproxy-test": "aiproxy-test",
        "aiproxy": "aiproxy",
        "aiproxy-cicd": "aiproxy-cicd",
        "aiproxy-cicd/Test/aiproxy-test": "aiproxy-test",
        "aiproxy-cicd/Production/aiproxy": "aiproxy",
        DEV: DEV,
        "aiproxy-cicd-dev-example-branch": "aiproxy-cicd-dev-example-branch",
        f"aiproxy-cicd-dev-example-branch/Development/{DEV}": DEV,
    }
    assert other_branch_stack_names == {
        "aiproxy-test-b1": "aiproxy-test-b1",
        "aiproxy-b1": "aiproxy-b1",
        "aiproxy-cicd-b1": "aiproxy-cicd-b1",
        "aiproxy-cicd-b1/Test/aiproxy-test-b1": "aiproxy-test-b1",
        "aiproxy-cicd-b1/Production/aiproxy-b1": "aiproxy-b1",
    }


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_subdomain_zone_is_delegated_from_the_base_zone(templates, stack):
    template = templates[stack]
    dns_name = ENVIRONMENTS[stack][1]
    zone_id, _ = only(template, "AWS::Route53::HostedZone", {"Name": f"{dns_name}."})
    template.has_resource_properties(
        "AWS::Route53::RecordSet",
        {
            "HostedZoneId": PLACEMENT[stack][1],
            "Name": f"{dns_name}.",
            "Type": "NS",
            "ResourceRecords": {"Fn::GetAtt": [zone_id, "NameServers"]},
        },
    )
    # The service's name points at the load balancer, inside its own zone.
    template.has_resource_properties(
        "AWS::Route53::RecordSet",
        {
            "HostedZoneId": {"Ref": zone_id},
            "Name": f"{dns_name}.",
            "Type": "A",
            "AliasTarget": Match.any_value(),
        },
    )


def test_certificate_is_dns_validated_after_the_delegation_exists(templates):
    template = templates["aiproxy"]
    zone_id, _ = only(template, "AWS::Route53::HostedZone")
    delegation_id, _ = only(template, "AWS::Route53::RecordSet", {"Type": "NS"})
    _, certificate = only(template, "AWS::CertificateManager::Certificate")
    assert certificate["Properties"]["DomainName"] == "aiproxy.example.org"
    assert certificate["Properties"]["ValidationMethod"] == "DNS"
    assert certificate["Properties"]["DomainValidationOptions"] == [
        {"DomainName": "aiproxy.example.org", "HostedZoneId": {"Ref": zone_id}}
    ]
    assert delegation_id in certificate["DependsOn"]


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_load_balancer_is_public_https_only(templates, stack):
    template = templates[stack]
    _, balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert balancer["Properties"]["Scheme"] == "internet-facing"
    public_subnets = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Public"}])}},
    )
    assert sorted(s["Ref"] for s in balancer["Properties"]["Subnets"]) == sorted(public_subnets)
    certificate_id, _ = only(template, "AWS::CertificateManager::Certificate")
    # One listener, HTTPS: no port 80 listener, not even a redirect (a key sent to http:// would
    # have leaked before the redirect), so plain HTTP is refused outright.
    _, listener = only(template, "AWS::ElasticLoadBalancingV2::Listener")
    assert listener["Properties"]["Port"] == 443
    assert listener["Properties"]["Protocol"] == "HTTPS"
    assert listener["Properties"]["Certificates"] == [{"CertificateArn": {"Ref": certificate_id}}]
    balancer_group_id = balancer["Properties"]["SecurityGroups"][0]["Fn::GetAtt"][0]
    group = template.to_json()["Resources"][balancer_group_id]["Properties"]
    assert [(rule["FromPort"], rule["ToPort"], rule["CidrIp"]) for rule in group["SecurityGroupIngress"]] == [
        (443, 443, "0.0.0.0/0")
    ]
    assert not [
        rule
        for rule in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": [balancer_group_id, "GroupId"]}
    ]


def load_balancer_attribute(template: Template, key: str) -> str:
    _, balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"]}
    return attributes[key]


def test_idle_timeout_outlasts_the_longest_request_and_stays_below_keepalive(templates):
    idle = int(load_balancer_attribute(templates["aiproxy"], "idle_timeout.timeout_seconds"))
    # An assessment waits up to the upstream timeout; the server keeps connections longer than
    # the ALB, so the ALB never sends a request on a connection the server just closed.
    assert (
        float(SETTING_DEFAULTS["AIPROXY_UPSTREAM_TIMEOUT"])
        < idle
        < int(SETTING_DEFAULTS["AIPROXY_KEEPALIVE"])
    )
    assert (
        load_balancer_attribute(templates["aiproxy"], "routing.http.drop_invalid_header_fields.enabled")
        == "true"
    )


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_fargate_service_runs_in_private_subnets_with_rollback(templates, stack):
    template = templates[stack]
    minimum, maximum = ENVIRONMENTS[stack][2:4]
    private_subnets = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}])}},
    )
    _, service = only(template, "AWS::ECS::Service")
    props = service["Properties"]
    assert props["LaunchType"] == "FARGATE"
    # No DesiredCount: a deploy leaves a scaled-out service at its size; autoscaling keeps the floor.
    assert "DesiredCount" not in props
    _, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (minimum, maximum)
    network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert sorted(s["Ref"] for s in network["Subnets"]) == sorted(private_subnets)
    assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert props["LoadBalancers"][0]["ContainerPort"] == 80


def test_production_runs_at_least_two_tasks(templates):
    template = templates["aiproxy"]
    service_id, _ = only(template, "AWS::ECS::Service")
    _, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["Properties"]["MinCapacity"] >= 2
    # The scalable target is the service's task count.
    assert target["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
    assert {"Fn::GetAtt": [service_id, "Name"]} in target["Properties"]["ResourceId"]["Fn::Join"][1]


def test_tasks_accept_traffic_only_from_the_load_balancer(templates):
    template = templates["aiproxy"]
    _, service = only(template, "AWS::ECS::Service")
    service_groups = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    assert len(service_groups) == 1
    service_group_id = service_groups[0]["Fn::GetAtt"][0]
    _, balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    balancer_group_id = balancer["Properties"]["SecurityGroups"][0]["Fn::GetAtt"][0]
    assert "SecurityGroupIngress" not in template.to_json()["Resources"][service_group_id]["Properties"]
    rules = template.find_resources(
        "AWS::EC2::SecurityGroupIngress",
        {"Properties": {"GroupId": {"Fn::GetAtt": [service_group_id, "GroupId"]}}},
    )
    assert [r["Properties"] for r in rules.values()] == [
        {
            "GroupId": {"Fn::GetAtt": [service_group_id, "GroupId"]},
            "SourceSecurityGroupId": {"Fn::GetAtt": [balancer_group_id, "GroupId"]},
            "IpProtocol": "tcp",
            "FromPort": 80,
            "ToPort": 80,
            "Description": "Load balancer to target",
        }
    ]


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_health_check_on_root_and_draining_lets_the_longest_request_finish(templates, stack):
    template = templates[stack]
    _, group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    props = group["Properties"]
    assert props["HealthCheckPath"] == "/"
    assert props["Matcher"] == {"HttpCode": "200"}
    assert props["TargetType"] == "ip"
    assert props["Port"] == 80
    # The ALB drains a task before ECS sends SIGTERM: the drain must outlast an assessment
    # waiting the full upstream timeout, or deploys and scale-ins cut such requests off.
    attributes = {a["Key"]: a["Value"] for a in props["TargetGroupAttributes"]}
    upstream = float(SETTING_DEFAULTS["AIPROXY_UPSTREAM_TIMEOUT"])
    assert int(attributes["deregistration_delay.timeout_seconds"]) >= upstream
    # After SIGTERM the server finishes what is left within its graceful timeout, before ECS kills it.
    graceful = int(SETTING_DEFAULTS["AIPROXY_GRACEFUL_TIMEOUT"])
    _, task = only(template, "AWS::ECS::TaskDefinition")
    assert task["Properties"]["ContainerDefinitions"][0]["StopTimeout"] > graceful


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_container_settings_image_and_unprivileged_port(templates, stack):
    environment_type, dns_name, *_ = ENVIRONMENTS[stack]
    _, task = only(templates[stack], "AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    # The shared store's URL is the cache's endpoint (tests/infra/test_store.py).
    assert environment.pop("AIPROXY_REDIS_URL")
    assert environment.pop("AIPROXY_REDIS_CLUSTER") == "true"  # a serverless cache is a cluster
    assert environment == {
        "ENVIRONMENT": dns_name,
        "ENVIRONMENT_TYPE": environment_type,
        "LOG_FORMAT": "json",
        # The caller's country, from the header the stack's WAF inserts (tests/infra/test_edge.py).
        "AIPROXY_REGION_HEADER": "x-amzn-waf-aiproxy-region",
    }
    # The image's non-root user binds port 80 thanks to this namespaced sysctl.
    assert container["SystemControls"] == [{"Namespace": "net.ipv4.ip_unprivileged_port_start", "Value": "0"}]
    assert container["PortMappings"] == [{"ContainerPort": 80, "Protocol": "tcp"}]
    # Built from this repository's Dockerfile as an image asset, pushed to the bootstrap repository.
    assert "container-assets" in container["Image"]["Fn::Sub"]
    # Secrets are read at run time by the task role, never injected at start by the execution role
    # (but the metrics key, with prometheus_metrics on: tests/infra/test_metrics_key.py).
    assert "Secrets" not in container


def test_task_size_follows_the_environment_type(templates):
    sizes = {}
    for stack in ENVIRONMENTS:
        _, task = only(templates[stack], "AWS::ECS::TaskDefinition")
        sizes[stack] = (task["Properties"]["Cpu"], task["Properties"]["Memory"])
    assert sizes == {"aiproxy-test": ("256", "512"), "aiproxy": ("512", "1024"), DEV: ("256", "512")}


def test_image_asset_holds_every_file_the_dockerfile_copies(synth_dir: Path):
    manifests = list(synth_dir.glob("*.assets.json"))
    image_dirs = {
        synth_dir / asset["source"]["directory"]
        for manifest in manifests
        for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values()
    }
    assert image_dirs
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    sources = [
        source.rstrip("/")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
        if not source.startswith("--")
    ]
    assert sources
    for image_dir in image_dirs:
        assert (image_dir / "Dockerfile").is_file()
        for source in sources:
            assert (image_dir / source).exists(), f"{source} (COPY in the Dockerfile) is not in the asset"
        assert not (image_dir / "tests").exists() and not (image_dir / ".venv").exists()


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_autoscaling_on_cpu_and_requests(templates, stack):
    template = templates[stack]
    _, minimum, maximum, _ = ENVIRONMENTS[stack][1:]
    target_id, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (minimum, maximum)
    policies = template.find_resources(
        "AWS::ApplicationAutoScaling::ScalingPolicy", {"Properties": {"ScalingTargetId": {"Ref": target_id}}}
    )
    metrics = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
        for p in policies.values()
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_secrets_are_created_empty_with_the_names_the_service_reads(templates, stack):
    environment_type, dns_name, *_ = ENVIRONMENTS[stack]
    secrets = templates[stack].find_resources("AWS::SecretsManager::Secret")
    # The one shared naming: the ids the service's own loader reads in this environment (with
    # the container's ENVIRONMENT_TYPE and ENVIRONMENT) are exactly the secrets the stack makes.
    store = SecretStore({}, environment_type, dns_name)
    # Provider credentials (cdk.json's provider_credentials) are read by name, like the service's own.
    credentials = ("vertex_service_account", "vertex_sa_tutor", "openai_key_chat_lab")
    assert sorted(s["Properties"]["Name"] for s in secrets.values()) == sorted(
        store.source_of(name) for name in (*SECRET_NAMES, *credentials)
    )
    assert store.source_of("openai_api_key") == secret_id(environment_type, dns_name, "openai_api_key")
    values = {
        s["Properties"]["Name"].rsplit("/", 1)[1]: s["Properties"].get("SecretString")
        for s in secrets.values()
    }
    # Keys start empty; the client key store starts as `{}` (no clients) so the service, which
    # refuses to run in test/production without a store, comes up locked instead of failing.
    assert values == {
        "honeybadger_api_key": None,
        "openai_api_key": None,
        "client_api_keys": "{}",
        "redis_auth": None,
        "safety_policies": "{}",  # no policies: no client is checked
        "end_user_hash_key": None,
        "answer_signing_key": None,
        **dict.fromkeys(credentials),  # nothing Google-specific at synth time: empty until set
    }
    for secret in secrets.values():
        # Nobody types these: the store's password, the end-user hash key, the signing seed.
        name = secret["Properties"]["Name"].rsplit("/", 1)[1]
        generated = name in ("redis_auth", "end_user_hash_key", "answer_signing_key")
        assert ("GenerateSecretString" in secret["Properties"]) is generated


def test_production_keeps_its_secrets_and_logs_when_the_stack_is_deleted(templates):
    # RetainExceptOnCreate: production keeps them on delete and replacement, but a first create
    # that rolls back deletes them, so the retry does not fail on "already exists". The key
    # that encrypts them lives exactly as long.
    for stack, deletion, replacement in (
        ("aiproxy", "RetainExceptOnCreate", "Retain"),
        ("aiproxy-test", "Delete", "Delete"),
        (DEV, "Delete", "Delete"),
    ):
        template = templates[stack]
        for resource_type in ("AWS::SecretsManager::Secret", "AWS::Logs::LogGroup", "AWS::KMS::Key"):
            found = template.find_resources(resource_type)
            assert found
            for resource in found.values():
                assert resource["DeletionPolicy"] == deletion, (stack, resource_type)
                assert resource["UpdateReplacePolicy"] == replacement, (stack, resource_type)


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_task_role_reads_only_its_own_secret_prefix(templates, stack):
    environment_type, dns_name, *_ = ENVIRONMENTS[stack]
    account = PLACEMENT[stack][0]
    template = templates[stack]
    _, task = only(template, "AWS::ECS::TaskDefinition")
    task_role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    execution_role = task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": task_role}]}})
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    key_id, _ = only(template, "AWS::KMS::Key")
    # Nothing else: no Bedrock model is configured, and no Comprehend (safety_comprehend is off).
    assert statements == [
        {
            "Action": "secretsmanager:GetSecretValue",
            "Effect": "Allow",
            "Resource": f"arn:aws:secretsmanager:{CONFIG.region}:{account}:secret:"
            f"{environment_type}/{dns_name}/*",
        },
        # The secrets' customer-managed key, through Secrets Manager only.
        {
            "Action": "kms:Decrypt",
            "Condition": {
                "StringEquals": {"kms:ViaService": f"secretsmanager.{CONFIG.region}.amazonaws.com"}
            },
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
        },
    ]
    role = template.to_json()["Resources"][task_role]
    assert "ManagedPolicyArns" not in role["Properties"]
    execution = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": execution_role}]}}
    )
    assert "secretsmanager" not in str(execution)


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_logs_go_to_a_log_group_with_retention(templates, stack):
    template = templates[stack]
    retention = ENVIRONMENTS[stack][4]
    groups = template.find_resources("AWS::Logs::LogGroup", {"Properties": {"RetentionInDays": retention}})
    _, task = only(template, "AWS::ECS::TaskDefinition")
    options = task["Properties"]["ContainerDefinitions"][0]["LogConfiguration"]["Options"]
    assert options["awslogs-group"]["Ref"] in groups
    template.has_output("LogGroupName", {"Value": {"Ref": options["awslogs-group"]["Ref"]}})


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_url_output(templates, stack):
    templates[stack].has_output("Url", {"Value": f"https://{ENVIRONMENTS[stack][1]}"})


def test_own_vpc_spans_two_configured_zones(templates):
    template = templates[DEV]
    template.resource_count_is("AWS::EC2::VPC", 1)
    zones = {
        s["Properties"]["AvailabilityZone"] for s in template.find_resources("AWS::EC2::Subnet").values()
    }
    assert zones == set(CONFIG.zones) == {"us-east-1a", "us-east-1b"}
    template.has_resource_properties("AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "REJECT"})


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_nat_gateways_per_environment_type(templates, stack):
    # Each NAT gateway holds an Elastic IP (5 per region by default): production one per AZ,
    # the other types one, shared by both AZs' private subnets.
    template = templates[stack]
    nat_gateways = NAT_GATEWAYS[stack]
    template.resource_count_is("AWS::EC2::NatGateway", nat_gateways)
    template.resource_count_is("AWS::EC2::EIP", nat_gateways)
    private_routes = [
        route["Properties"]
        for route in template.find_resources("AWS::EC2::Route").values()
        if "NatGatewayId" in route["Properties"]
    ]
    assert len(private_routes) == 2  # every private subnet has its way out
    assert len({json.dumps(r["NatGatewayId"]) for r in private_routes}) == nat_gateways


def test_no_physical_names_on_cluster_balancer_or_target_group(templates):
    template = templates[DEV]
    for resource_type, name_property in (
        ("AWS::ECS::Cluster", "ClusterName"),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "Name"),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "Name"),
    ):
        _, resource = only(template, resource_type)
        assert name_property not in resource.get("Properties", {}), resource_type
