"""The shared limits store of each environment: ElastiCache Serverless for Valkey (issue: shared limits)."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from infra_cdk.store import MAX_ID_LENGTH, physical_id
from tests.support.templates import only

DEV = "aiproxy-dev-example-branch"
ENVIRONMENTS = ("aiproxy-test", "aiproxy", DEV)


@pytest.fixture(scope="module")
def templates(template_json) -> dict[str, Template]:
    return {stack: Template.from_json(template_json(stack)) for stack in ENVIRONMENTS}


def private_subnets(template: Template) -> list[dict]:
    found = template.find_resources(
        "AWS::EC2::Subnet",
        {"Properties": {"Tags": Match.array_with([{"Key": "aws-cdk:subnet-type", "Value": "Private"}])}},
    )
    return sorted(({"Ref": subnet} for subnet in found), key=str)


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_serverless_valkey_in_the_private_subnets(templates, stack):
    template = templates[stack]
    _, cache = only(template, "AWS::ElastiCache::ServerlessCache")
    props = cache["Properties"]
    assert (props["Engine"], props["MajorEngineVersion"]) == ("valkey", "8")
    assert sorted(props["SubnetIds"], key=str) == private_subnets(template)
    assert len(props["SubnetIds"]) == 2  # one per availability zone
    # Stored data is capped: counters are tiny, a runaway writer cannot run up the bill. It is also
    # what bounds the answer cache's memory: Serverless has no maxmemory-policy to set (no parameter
    # group); at the cap it evicts the least recently used keys that have a TTL, and every answer
    # has one (docs/cache.md).
    assert props["CacheUsageLimits"] == {"DataStorage": {"Maximum": 1, "Unit": "GB"}}
    assert "CacheParameterGroupName" not in props and "ParameterGroupName" not in props
    assert len(props["ServerlessCacheName"]) <= MAX_ID_LENGTH


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_store_accepts_only_the_service_tasks_on_its_port(templates, stack):
    template = templates[stack]
    _, cache = only(template, "AWS::ElastiCache::ServerlessCache")
    (group,) = cache["Properties"]["SecurityGroupIds"]
    group_id = group["Fn::GetAtt"][0]
    _, service = only(template, "AWS::ECS::Service")
    (service_group,) = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    store_group = template.to_json()["Resources"][group_id]["Properties"]
    assert "SecurityGroupIngress" not in store_group
    # No egress: CDK's placeholder rule, which matches no traffic.
    assert [rule["CidrIp"] for rule in store_group["SecurityGroupEgress"]] == ["255.255.255.255/32"]
    ingress = template.find_resources(
        "AWS::EC2::SecurityGroupIngress", {"Properties": {"GroupId": {"Fn::GetAtt": [group_id, "GroupId"]}}}
    )
    assert [r["Properties"] for r in ingress.values()] == [
        {
            "GroupId": {"Fn::GetAtt": [group_id, "GroupId"]},
            "SourceSecurityGroupId": service_group,
            "IpProtocol": "tcp",
            "FromPort": 6379,
            "ToPort": 6379,
            "Description": "Service tasks to Valkey",
        }
    ]


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_only_the_service_user_may_connect_with_the_redis_auth_secret(templates, stack):
    template = templates[stack]
    (secret_id,) = template.find_resources(
        "AWS::SecretsManager::Secret", {"Properties": {"Name": Match.string_like_regexp(r"/redis_auth$")}}
    )
    # CloudFormation resolves the password from the secret; it is never in the template.
    password = {"Fn::Join": ["", ["{{resolve:secretsmanager:", {"Ref": secret_id}, ":SecretString:::}}"]]}
    service_user_id, service_user = only(template, "AWS::ElastiCache::User", {"UserName": "aiproxy"})
    default_user_id, default_user = only(template, "AWS::ElastiCache::User", {"UserName": "default"})
    assert service_user["Properties"]["AuthenticationMode"] == {"Type": "password", "Passwords": [password]}
    assert service_user["Properties"]["AccessString"] == "on ~* &* +@all -@dangerous"
    # Every connection starts as `default`, which can do nothing.
    assert default_user["Properties"]["AccessString"] == "off -@all"
    assert default_user["Properties"]["AuthenticationMode"]["Type"] == "password"
    group_id, group = only(template, "AWS::ElastiCache::UserGroup")
    assert group["Properties"]["Engine"] == "valkey"
    assert sorted(group["Properties"]["UserIds"], key=str) == sorted(
        [{"Ref": service_user_id}, {"Ref": default_user_id}], key=str
    )
    template.has_resource_properties("AWS::ElastiCache::ServerlessCache", {"UserGroupId": {"Ref": group_id}})


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_task_gets_the_store_url_with_tls_and_the_user(templates, stack):
    template = templates[stack]
    cache_id, _ = only(template, "AWS::ElastiCache::ServerlessCache")
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Environment": Match.array_with(
                            [
                                {
                                    "Name": "AIPROXY_REDIS_URL",
                                    # rediss:// is TLS, which serverless caches require.
                                    "Value": {
                                        "Fn::Join": [
                                            "",
                                            [
                                                "rediss://aiproxy@",
                                                {"Fn::GetAtt": [cache_id, "Endpoint.Address"]},
                                                ":",
                                                {"Fn::GetAtt": [cache_id, "Endpoint.Port"]},
                                            ],
                                        ]
                                    },
                                }
                            ]
                        )
                    }
                )
            ]
        },
    )


def test_store_ids_are_valid_elasticache_ids_for_every_branch_length():
    assert physical_id("aiproxy-dev-x", "service") == "aiproxy-dev-x-service"
    long_branch = "aiproxy-test-" + "a-very-long-branch-name-with-many-words-in-it"[:50]
    ids = {physical_id(long_branch, suffix) for suffix in ("service", "default", "users", "limits")}
    assert len(ids) == 4
    for found in ids:
        assert len(found) <= MAX_ID_LENGTH and found[0].isalpha() and "--" not in found, found
    # Two long names that share their beginning stay apart.
    assert physical_id(long_branch + "-x", "limits") != physical_id(long_branch + "-y", "limits")
