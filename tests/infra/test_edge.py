"""The edge of each environment: WAF web ACL, ALB access logs, deletion protection."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from infra_cdk.edge import COUNTED_COMMON_RULES
from infra_cdk.environments import ENVIRONMENT_TYPE_SETTINGS
from tests.support.templates import only

DEV = "aiproxy-dev-example-branch"
# stack -> environment type
ENVIRONMENTS = {"aiproxy-test": "test", "aiproxy": "production", DEV: "development"}


@pytest.fixture(scope="module")
def templates(template_json) -> dict[str, Template]:
    return {stack: Template.from_json(template_json(stack)) for stack in ENVIRONMENTS}


def rules(template: Template) -> dict[str, dict]:
    _, acl = only(template, "AWS::WAFv2::WebACL")
    return {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_web_acl_guards_the_load_balancer_with_managed_rules_and_a_rate_limit(templates, stack):
    template = templates[stack]
    acl_id, acl = only(template, "AWS::WAFv2::WebACL")
    balancer_id, _ = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    template.has_resource_properties(
        "AWS::WAFv2::WebACLAssociation",
        {"ResourceArn": {"Ref": balancer_id}, "WebACLArn": {"Fn::GetAtt": [acl_id, "Arn"]}},
    )
    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert acl["Properties"]["DefaultAction"] == {"Allow": {}}
    found = rules(template)
    # In evaluation order: forged WAF headers and bad IPs first, then the rate limit, then the
    # request inspections, then the region (which only counts, and names it).
    assert sorted(found, key=lambda name: found[name]["Priority"]) == [
        "BlockClientSentWafHeaders",
        "AWSManagedRulesAmazonIpReputationList",
        "RateLimitPerSourceIp",
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "RegionUS",
        "RegionCA",
    ]
    for name in ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesKnownBadInputsRuleSet"):
        statement = found[name]["Statement"]["ManagedRuleGroupStatement"]
        assert statement == {"VendorName": "AWS", "Name": name}, "no rule of these groups is relaxed"
        assert found[name]["OverrideAction"] == {"None": {}}
    rate = found["RateLimitPerSourceIp"]
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": ENVIRONMENT_TYPE_SETTINGS[ENVIRONMENTS[stack]].waf_rate_limit,
        "AggregateKeyType": "IP",
        "EvaluationWindowSec": 300,
    }
    for rule in found.values():
        assert rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True


def test_large_bodies_and_student_code_are_counted_not_blocked(templates):
    # POST /assessment sends programs, rubrics and examples of several hundred KB, and student
    # JavaScript holds <script>, event handlers and ../ paths: these body rules only count.
    common = rules(templates["aiproxy"])["AWSManagedRulesCommonRuleSet"]
    statement = common["Statement"]["ManagedRuleGroupStatement"]
    assert statement["Name"] == "AWSManagedRulesCommonRuleSet"
    assert common["OverrideAction"] == {"None": {}}  # every other rule of the group blocks
    overrides = {o["Name"]: o["ActionToUse"] for o in statement["RuleActionOverrides"]}
    assert overrides == {
        "SizeRestrictions_BODY": {"Count": {}},
        "CrossSiteScripting_BODY": {"Count": {}},
        "GenericLFI_BODY": {"Count": {}},
    }
    assert set(overrides) == set(COUNTED_COMMON_RULES)
    assert "ScopeDownStatement" not in statement and "ExcludedRules" not in statement


def test_production_rate_limit_allows_more_than_branch_environments(templates):
    limits = {
        stack: rules(t)["RateLimitPerSourceIp"]["Statement"]["RateBasedStatement"]["Limit"]
        for stack, t in templates.items()
    }
    assert limits == {"aiproxy-test": 1000, "aiproxy": 3000, DEV: 1000}


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_access_logs_go_to_an_encrypted_tls_only_bucket_that_expires_them(templates, stack):
    template = templates[stack]
    bucket_id, bucket = only(template, "AWS::S3::Bucket")
    _, balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": bucket_id}
    props = bucket["Properties"]
    assert props["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    days = ENVIRONMENT_TYPE_SETTINGS[ENVIRONMENTS[stack]].log_retention_days
    assert props["LifecycleConfiguration"]["Rules"] == [
        {"ExpirationInDays": days, "NoncurrentVersionExpiration": {"NoncurrentDays": 1}, "Status": "Enabled"}
    ]
    # Kept when the stack is deleted: CloudFormation cannot delete a bucket that holds logs.
    assert bucket["DeletionPolicy"] == "Retain"
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            ),
                            # The load balancer's log delivery may write its prefix only.
                            Match.object_like({"Effect": "Allow", "Action": "s3:PutObject"}),
                        ]
                    )
                }
            ),
        },
    )


def test_only_production_load_balancer_is_deletion_protected(templates):
    protected = {}
    for stack, template in templates.items():
        _, balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
        attributes = {a["Key"]: a["Value"] for a in balancer["Properties"]["LoadBalancerAttributes"]}
        protected[stack] = attributes["deletion_protection.enabled"]
    assert protected == {"aiproxy-test": "false", "aiproxy": "true", DEV: "false"}


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_the_waf_names_the_callers_country_in_the_header_the_service_reads(templates, stack):
    template = templates[stack]
    found = rules(template)
    for country in ("US", "CA"):  # cdk.json's region_countries
        rule = found[f"Region{country}"]
        assert rule["Statement"] == {"GeoMatchStatement": {"CountryCodes": [country]}}
        # Counted, so every other rule still applies; the header WAF inserts is prefixed x-amzn-waf-.
        assert rule["Action"] == {
            "Count": {
                "CustomRequestHandling": {"InsertHeaders": [{"Name": "aiproxy-region", "Value": country}]}
            }
        }
    # A client cannot bring its own: any header named like WAF's is blocked before the rest.
    forged = found["BlockClientSentWafHeaders"]
    assert forged["Priority"] == 0 and forged["Action"] == {"Block": {}}
    match = forged["Statement"]["ByteMatchStatement"]
    assert (match["SearchString"], match["PositionalConstraint"]) == ("x-amzn-waf-", "STARTS_WITH")
    assert match["FieldToMatch"]["Headers"]["MatchScope"] == "KEY"
    assert match["TextTransformations"] == [{"Priority": 0, "Type": "LOWERCASE"}]
    _, task = only(template, "AWS::ECS::TaskDefinition")
    [container] = task["Properties"]["ContainerDefinitions"]
    settings = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert settings["AIPROXY_REGION_HEADER"] == "x-amzn-waf-aiproxy-region"
