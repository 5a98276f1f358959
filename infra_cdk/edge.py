"""The web application firewall in front of the load balancer (WAF v2, regional).

Rules, in order: Amazon's IP reputation list, a rate limit per source IP, the Common rule set,
and the known-bad-inputs rule set (Log4Shell and the like).

Tuning for this service's traffic: it relays prompts and grades programs, so request bodies are
large and full of code. Three body rules of the Common rule set would block legitimate requests
and only count here (their matches stay visible in the web ACL's metrics):

- SizeRestrictions_BODY blocks bodies over 8 KB: `POST /assessment` sends a program, a rubric and
  examples of several hundred KB, and chats carry long conversations. The service enforces its
  own body limit (413).
- CrossSiteScripting_BODY matches `<script>`, `onload=`, `javascript:` and the like, which
  student JavaScript (and code pasted into chats) contains; the API answers JSON and never
  renders what it receives.
- GenericLFI_BODY matches `../` path traversal, as in a program's relative paths
  (`loadImage("../assets/cat.png")`); the service opens no file named in a request.

The same rules on the URI, query string, headers and cookies keep blocking.

**The caller's region.** Last, one counting rule per configured country (geo match on the
caller's address) inserts the header `aiproxy-region: <country>`, which WAF prefixes:
`x-amzn-waf-aiproxy-region`, the service's AIPROXY_REGION_HEADER in a deployment. Model groups
route by it (docs/routing.md). A counting rule does not end the evaluation, so every other rule
still applies. WAF only adds headers (it replaces one of the same name only when a rule inserts
it), so a client could otherwise send its own `x-amzn-waf-aiproxy-region` from a country no rule
names: the first rule blocks every request that brings any `x-amzn-waf-` header, as AWS advises.
Whatever the service finds in that header, WAF put there.
"""

from __future__ import annotations

from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

# Managed rule groups in evaluation order (after the rate limit, which comes second).
IP_REPUTATION = "AWSManagedRulesAmazonIpReputationList"
COMMON = "AWSManagedRulesCommonRuleSet"
KNOWN_BAD_INPUTS = "AWSManagedRulesKnownBadInputsRuleSet"
# Common rule set rules that only count (see the module's docstring for why).
COUNTED_COMMON_RULES = ("SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY")
RATE_LIMIT_RULE = "RateLimitPerSourceIp"
RATE_WINDOW_SECONDS = 300
FORGED_HEADER_RULE = "BlockClientSentWafHeaders"
WAF_HEADER_PREFIX = "x-amzn-waf-"  # what WAF puts before the name of every header it inserts
REGION_HEADER = "aiproxy-region"
# The header the service reads (AIPROXY_REGION_HEADER), as it arrives.
REGION_HEADER_SETTING = WAF_HEADER_PREFIX + REGION_HEADER

_WebACL = wafv2.CfnWebACL


def _visibility(metric_name: str) -> _WebACL.VisibilityConfigProperty:
    return _WebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


def _managed(name: str, priority: int, counted: tuple[str, ...] = ()) -> _WebACL.RuleProperty:
    return _WebACL.RuleProperty(
        name=name,
        priority=priority,
        statement=_WebACL.StatementProperty(
            managed_rule_group_statement=_WebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=name,
                rule_action_overrides=[
                    _WebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=_WebACL.RuleActionProperty(count={})
                    )
                    for rule in counted
                ]
                or None,
            )
        ),
        override_action=_WebACL.OverrideActionProperty(none={}),
        visibility_config=_visibility(name),
    )


def _forged_headers_rule(priority: int) -> _WebACL.RuleProperty:
    """Block a request that brings a header named like those WAF inserts: only WAF may set them."""
    return _WebACL.RuleProperty(
        name=FORGED_HEADER_RULE,
        priority=priority,
        statement=_WebACL.StatementProperty(
            byte_match_statement=_WebACL.ByteMatchStatementProperty(
                search_string=WAF_HEADER_PREFIX,
                field_to_match=_WebACL.FieldToMatchProperty(
                    headers=_WebACL.HeadersProperty(
                        match_pattern=_WebACL.HeaderMatchPatternProperty(all={}),
                        match_scope="KEY",
                        oversize_handling="MATCH",
                    )
                ),
                positional_constraint="STARTS_WITH",
                text_transformations=[_WebACL.TextTransformationProperty(priority=0, type="LOWERCASE")],
            )
        ),
        action=_WebACL.RuleActionProperty(block={}),
        visibility_config=_visibility(FORGED_HEADER_RULE),
    )


def _region_rule(country: str, priority: int) -> _WebACL.RuleProperty:
    """Count a request from `country` and name it in the region header (the evaluation goes on)."""
    name = f"Region{country}"
    header = _WebACL.CustomHTTPHeaderProperty(name=REGION_HEADER, value=country)
    return _WebACL.RuleProperty(
        name=name,
        priority=priority,
        statement=_WebACL.StatementProperty(
            geo_match_statement=_WebACL.GeoMatchStatementProperty(country_codes=[country])
        ),
        action=_WebACL.RuleActionProperty(
            count=_WebACL.CountActionProperty(
                custom_request_handling=_WebACL.CustomRequestHandlingProperty(insert_headers=[header])
            )
        ),
        visibility_config=_visibility(name),
    )


class WebFirewall(Construct):
    """Exposes `web_acl` (associated with the load balancer) and `association`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        load_balancer: elbv2.IApplicationLoadBalancer,
        rate_limit: int,
        metric_prefix: str,
        region_countries: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        rate_rule = _WebACL.RuleProperty(
            name=RATE_LIMIT_RULE,
            priority=2,
            statement=_WebACL.StatementProperty(
                rate_based_statement=_WebACL.RateBasedStatementProperty(
                    limit=rate_limit, aggregate_key_type="IP", evaluation_window_sec=RATE_WINDOW_SECONDS
                )
            ),
            action=_WebACL.RuleActionProperty(block={}),
            visibility_config=_visibility(RATE_LIMIT_RULE),
        )
        self.web_acl = _WebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=_WebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(metric_prefix),
            rules=[
                _forged_headers_rule(0),
                _managed(IP_REPUTATION, 1),
                rate_rule,
                _managed(COMMON, 3, COUNTED_COMMON_RULES),
                _managed(KNOWN_BAD_INPUTS, 4),
                *(_region_rule(country, 5 + n) for n, country in enumerate(region_countries)),
            ],
        )
        self.association = wafv2.CfnWebACLAssociation(
            self,
            "Association",
            resource_arn=load_balancer.load_balancer_arn,
            web_acl_arn=self.web_acl.attr_arn,
        )
