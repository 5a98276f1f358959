"""The pipeline stacks (issue 7): stages, test commands, pull-request check, roles, notifications."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from infra_cdk import snapshots
from infra_cdk.environments import config_from_context
from infra_cdk.pipeline_stack import CDK_ASSETS_VERSION, CDK_CLI_VERSION

CONFIG = config_from_context(snapshots.cdk_json_context().get)  # the examples' configuration
PRODUCTION = "aiproxy-cicd"  # main's production pipeline
DEVELOPMENT = "aiproxy-cicd-dev-example-branch"
PULL_REQUEST_EVENTS = ("PULL_REQUEST_CREATED", "PULL_REQUEST_UPDATED", "PULL_REQUEST_REOPENED")
PIPELINES = {PRODUCTION: ("production", "main"), DEVELOPMENT: ("development", "example-branch")}


@pytest.fixture(scope="module")
def templates(template_json) -> dict[str, Template]:
    return {stack: Template.from_json(template_json(stack)) for stack in PIPELINES}


def resources(template: Template, resource_type: str) -> dict[str, dict]:
    return template.find_resources(resource_type)


def pipeline_stages(template: Template) -> list[dict]:
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline").values()
    return pipeline["Properties"]["Stages"]


def stage_actions(stage: dict) -> list[tuple[str, str]]:
    """(action name, provider) in run order."""
    ordered = sorted(stage["Actions"], key=lambda a: a.get("RunOrder", 1))
    return [(a["Name"], a["ActionTypeId"]["Provider"]) for a in ordered]


def project(template: Template, logical_id: str) -> dict:
    return template.to_json()["Resources"][logical_id]


def action(template: Template, stage_name: str, action_name: str) -> dict:
    (stage,) = [s for s in pipeline_stages(template) if s["Name"] == stage_name]
    (found,) = [a for a in stage["Actions"] if a["Name"] == action_name]
    return found


def build_commands(template: Template, stage_name: str, action_name: str) -> list[str]:
    logical_id = action(template, stage_name, action_name)["Configuration"]["ProjectName"]["Ref"]
    spec = json.loads(project(template, logical_id)["Properties"]["Source"]["BuildSpec"])
    phases = spec["phases"]
    return phases.get("install", {}).get("commands", []) + phases["build"]["commands"]


def role_statements(template: Template, role_logical_id: str) -> list[dict]:
    policies = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_logical_id}]}}
    )
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions_of(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}


def test_production_pipeline_deploys_test_then_production_with_tests_after_each(templates):
    stages = pipeline_stages(templates[PRODUCTION])
    assert [s["Name"] for s in stages] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "Test",
        "Production",
    ]
    assert stage_actions(stages[4]) == [
        ("aiproxy-test.Prepare", "CloudFormation"),
        ("aiproxy-test.Deploy", "CloudFormation"),
        ("IntegrationTests", "CodeBuild"),
    ]
    # A person approves before production is deployed (ENVIRONMENT_TYPE_SETTINGS, on by default).
    assert stage_actions(stages[5]) == [
        ("Approve", "Manual"),
        ("aiproxy.Prepare", "CloudFormation"),
        ("aiproxy.Deploy", "CloudFormation"),
        ("SmokeTests", "CodeBuild"),
    ]


def test_development_pipeline_deploys_one_environment_then_smoke_tests(templates):
    stages = pipeline_stages(templates[DEVELOPMENT])
    assert [s["Name"] for s in stages] == ["Source", "Build", "UpdatePipeline", "Assets", "Development"]
    assert stage_actions(stages[4]) == [
        ("aiproxy-dev-example-branch.Prepare", "CloudFormation"),
        ("aiproxy-dev-example-branch.Deploy", "CloudFormation"),
        ("SmokeTests", "CodeBuild"),
    ]


@pytest.mark.parametrize("stack", PIPELINES)
def test_source_is_the_branch_through_the_configured_connection(templates, stack):
    (source,) = pipeline_stages(templates[stack])[0]["Actions"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": CONFIG.codestar_connection_arn,
        "FullRepositoryId": f"{CONFIG.github_owner}/{CONFIG.github_repo}",
        "BranchName": PIPELINES[stack][1],
    }


@pytest.mark.parametrize("stack", PIPELINES)
def test_build_runs_make_test_then_synthesizes_its_own_deployment(templates, stack):
    environment_type, branch = PIPELINES[stack]
    commands = build_commands(templates[stack], "Build", "Build")
    assert commands[0] == "make test"
    assert len(commands) == 2
    assert f"npx -y aws-cdk@{CDK_CLI_VERSION} synth" in commands[1]
    # cdk.json's configuration comes with the checkout; only what differs is passed.
    assert commands[1].endswith(f"synth -c environment_type={environment_type} -c branch={branch}")


@pytest.mark.parametrize("stack", PIPELINES)
def test_pipeline_runs_pinned_cdk_cli_and_cdk_assets_versions(templates, stack, synth_dir: Path):
    assert CDK_CLI_VERSION.startswith("2.") and CDK_CLI_VERSION.count(".") == 2
    assert "npm install -g aws-cdk@" + CDK_CLI_VERSION in build_commands(
        templates[stack], "UpdatePipeline", "SelfMutate"
    )
    # The asset projects' build specs are files of the cloud assembly.
    installs = {
        line.strip().strip('",')
        for spec in synth_dir.glob("buildspec-*Asset.yaml")
        for line in spec.read_text().splitlines()
        if "npm install" in line
    }
    assert installs == {f"npm install -g cdk-assets@{CDK_ASSETS_VERSION}"}


def test_only_production_waits_for_an_approval_and_approvers_are_told(templates):
    approvals = {
        stack: [
            (stage["Name"], a["Name"])
            for stage in pipeline_stages(templates[stack])
            for a in stage["Actions"]
            if a["ActionTypeId"]["Category"] == "Approval"
        ]
        for stack in PIPELINES
    }
    assert approvals == {PRODUCTION: [("Production", "Approve")], DEVELOPMENT: []}
    templates[PRODUCTION].has_resource_properties(
        "AWS::CodeStarNotifications::NotificationRule",
        {"EventTypeIds": Match.array_with(["codepipeline-pipeline-manual-approval-needed"])},
    )


def test_production_in_another_account_is_deployed_with_its_roles_and_a_shared_artifact_key(templates):
    # cdk.json's example puts production in account 222222222222.
    template = templates[PRODUCTION]
    assert CONFIG.production_account == "222222222222" != CONFIG.account
    for name, account in (("aiproxy-test.Deploy", CONFIG.account), ("aiproxy.Deploy", "222222222222")):
        stage = "Production" if name.startswith("aiproxy.") else "Test"
        role = json.dumps(action(template, stage, name)["RoleArn"])
        assert f"iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-{CONFIG.region}" in role
    (pipeline,) = template.find_resources("AWS::CodePipeline::Pipeline").values()
    key_id = pipeline["Properties"]["ArtifactStore"]["EncryptionKey"]["Id"]["Fn::GetAtt"][0]
    key = template.to_json()["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    readers = [
        json.dumps(s["Principal"])
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "kms:Decrypt" in s["Action"]
    ]
    assert any("iam::222222222222:role/cdk-hnb659fds-deploy-role" in r for r in readers)


@pytest.mark.parametrize("stack", PIPELINES)
def test_pipeline_updates_itself(templates, stack):
    commands = build_commands(templates[stack], "UpdatePipeline", "SelfMutate")
    assert f"cdk -a . deploy {stack} --require-approval=never --verbose" in commands


@pytest.mark.parametrize(
    ("stack", "stage", "step", "stack_output", "selection"),
    [
        (PRODUCTION, "Test", "IntegrationTests", "aiproxy-test", ""),
        (PRODUCTION, "Production", "SmokeTests", "aiproxy", " -m smoke"),
        (DEVELOPMENT, "Development", "SmokeTests", "aiproxy-dev-example-branch", " -m smoke"),
    ],
)
def test_deployed_tests_run_against_the_stage_url(templates, stack, stage, step, stack_output, selection):
    template = templates[stack]
    commands = build_commands(template, stage, step)
    assert commands == [
        "python -m pip install --quiet -r tests/deployed/requirements.txt",
        f"python -m pytest tests/deployed -n 0 -p no:cacheprovider{selection}",
    ]
    deploy_namespace = action(template, stage, f"{stack_output}.Deploy")["Namespace"]
    variables = json.loads(action(template, stage, step)["Configuration"]["EnvironmentVariables"])
    assert variables == [
        {"name": "AIPROXY_URL", "type": "PLAINTEXT", "value": f"#{{{deploy_namespace}.Url}}"}
    ]
    # The client key comes from the pipeline's secret, resolved by CodeBuild at build start.
    logical_id = action(template, stage, step)["Configuration"]["ProjectName"]["Ref"]
    (secret_id,) = template.find_resources(
        "AWS::SecretsManager::Secret", {"Properties": {"Name": f"cicd/{stack}/test_client_key"}}
    )
    assert project(template, logical_id)["Properties"]["Environment"]["EnvironmentVariables"] == [
        {"Name": "AIPROXY_TEST_KEY", "Type": "SECRETS_MANAGER", "Value": {"Ref": secret_id}}
    ]


def test_deployed_test_steps_may_read_the_test_key_and_deploy_nothing(templates):
    template = templates[PRODUCTION]
    (secret_id,) = template.find_resources("AWS::SecretsManager::Secret")
    (key_id,) = template.find_resources(
        "AWS::KMS::Key", {"Properties": {"Description": Match.string_like_regexp("secret")}}
    )
    for stage, step in (("Test", "IntegrationTests"), ("Production", "SmokeTests")):
        logical_id = action(template, stage, step)["Configuration"]["ProjectName"]["Ref"]
        role = project(template, logical_id)["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
        statements = role_statements(template, role)
        secret_statements = [s for s in statements if "secretsmanager" in str(s["Action"])]
        assert [s["Resource"] for s in secret_statements] == [{"Ref": secret_id}]
        # ... and decrypt it with its key, through Secrets Manager only.
        assert {
            "Action": "kms:Decrypt",
            "Condition": {
                "StringEquals": {"kms:ViaService": f"secretsmanager.{CONFIG.region}.amazonaws.com"}
            },
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [key_id, "Arn"]},
        } in statements
        assert not any(
            a.startswith(("cloudformation:", "sts:", "iam:", "ecs:")) for a in actions_of(statements)
        )


def test_pull_request_check_runs_make_test_on_pull_requests_into_the_branch(templates):
    # Pull requests from the repository's branches build at once; those from forks wait for a
    # comment from someone who may write to the repository.
    for stack, (_, branch) in PIPELINES.items():
        template = templates[stack]
        template.has_resource_properties(
            "AWS::CodeBuild::Project",
            {
                "Source": Match.object_like(
                    {
                        "Type": "GITHUB",
                        "Location": f"https://github.com/{CONFIG.github_owner}/{CONFIG.github_repo}.git",
                        "ReportBuildStatus": True,
                        "Auth": {"Type": "CODECONNECTIONS", "Resource": CONFIG.codestar_connection_arn},
                    }
                ),
                "Triggers": {
                    "Webhook": True,
                    "FilterGroups": [
                        [
                            {
                                "Type": "EVENT",
                                "Pattern": ", ".join(PULL_REQUEST_EVENTS),
                            },
                            {"Type": "BASE_REF", "Pattern": f"^refs/heads/{branch}$"},
                        ]
                    ],
                    "PullRequestBuildPolicy": {
                        "RequiresCommentApproval": "FORK_PULL_REQUESTS",
                        "ApproverRoles": ["GITHUB_WRITE", "GITHUB_MAINTAIN", "GITHUB_ADMIN"],
                    },
                },
            },
        )


def pull_request_project(template: Template) -> tuple[str, dict]:
    (found,) = template.find_resources(
        "AWS::CodeBuild::Project", {"Properties": {"Source": {"Type": "GITHUB"}}}
    ).items()
    return found


def test_pull_request_check_has_no_deploy_rights_and_no_secrets(templates):
    template = templates[PRODUCTION]
    _, pull_request = pull_request_project(template)
    spec = json.loads(pull_request["Properties"]["Source"]["BuildSpec"])
    assert spec["phases"]["build"]["commands"] == ["make test"]
    assert "EnvironmentVariables" not in pull_request["Properties"]["Environment"]
    role = pull_request["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in project(template, role)["Properties"]
    allowed = actions_of(role_statements(template, role))
    assert allowed == {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "codebuild:BatchPutCodeCoverages",
        "codebuild:BatchPutTestCases",
        "codebuild:CreateReport",
        "codebuild:CreateReportGroup",
        "codebuild:UpdateReport",
        "codeconnections:GetConnection",
        "codeconnections:GetConnectionToken",
        "codeconnections:UseConnection",
    }
    # The connection grant names the one connection, nothing else.
    connection = [
        s for s in role_statements(template, role) if "codeconnections:UseConnection" in s["Action"]
    ]
    assert [s["Resource"] for s in connection] == [CONFIG.codestar_connection_arn]


@pytest.mark.parametrize("stack", PIPELINES)
def test_asset_roles_start_only_their_own_asset_builds(templates, stack):
    # CDK Pipelines grants its asset roles StartBuild/StopBuild on "*"; narrowed to the asset
    # projects that run as each role (the pipeline starts them with its own action role).
    template = templates[stack]
    projects_of_role: dict[str, list[dict]] = {}
    for project_id, found in template.find_resources("AWS::CodeBuild::Project").items():
        if project_id.startswith("PipelineAssets"):
            role = found["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
            projects_of_role.setdefault(role, []).append({"Fn::GetAtt": [project_id, "Arn"]})
    assert len(projects_of_role) == 2  # Docker image and file assets
    for role, projects in projects_of_role.items():
        build_statements = [
            s for s in role_statements(template, role) if "codebuild:StartBuild" in actions_of([s])
        ]
        assert build_statements == [
            {
                "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"],
                "Effect": "Allow",
                "Resource": projects,
            }
        ]


@pytest.mark.parametrize("stack", PIPELINES)
def test_pull_request_project_is_created_after_its_connection_grant(templates, stack):
    # CodeBuild checks the role's access to the connection when it creates the project and its
    # webhook: the grant is a policy of its own, and the project waits for it.
    template = templates[stack]
    project_id, pull_request = pull_request_project(template)
    role = pull_request["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    connection_policies = {
        policy_id: policy
        for policy_id, policy in template.find_resources(
            "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role}]}}
        ).items()
        if "codeconnections:UseConnection" in json.dumps(policy)
    }
    assert len(connection_policies) == 1
    ((policy_id, policy),) = connection_policies.items()
    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {
            "Action": [
                "codeconnections:GetConnection",
                "codeconnections:GetConnectionToken",
                "codeconnections:UseConnection",
            ],
            "Effect": "Allow",
            "Resource": CONFIG.codestar_connection_arn,
        }
    ]
    assert policy_id in pull_request["DependsOn"]
    # ... and the policy does not wait for the project (no cycle).
    assert project_id not in json.dumps(policy)


@pytest.mark.parametrize("stack", PIPELINES)
def test_notifications_of_started_failed_and_succeeded_go_to_the_topic(templates, stack):
    template = templates[stack]
    (topic_id,) = template.find_resources("AWS::SNS::Topic")
    (pipeline_id,) = template.find_resources("AWS::CodePipeline::Pipeline")
    template.has_resource_properties(
        "AWS::CodeStarNotifications::NotificationRule",
        {
            "EventTypeIds": [
                "codepipeline-pipeline-pipeline-execution-started",
                "codepipeline-pipeline-pipeline-execution-failed",
                "codepipeline-pipeline-pipeline-execution-succeeded",
                "codepipeline-pipeline-manual-approval-needed",
            ],
            "Resource": Match.object_like(
                {"Fn::Join": Match.array_with([Match.array_with([{"Ref": pipeline_id}])])}
            ),
            "Targets": [{"TargetAddress": {"Ref": topic_id}, "TargetType": "SNS"}],
        },
    )
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [{"Ref": topic_id}],
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            ),
                            Match.object_like(
                                {
                                    "Action": "sns:Publish",
                                    "Principal": {"Service": "codestar-notifications.amazonaws.com"},
                                }
                            ),
                        ]
                    )
                }
            ),
        },
    )


@pytest.mark.parametrize("stack", PIPELINES)
def test_artifact_bucket_is_encrypted_private_and_tls_only(templates, stack):
    template = templates[stack]
    (bucket_id, bucket), *others = template.find_resources("AWS::S3::Bucket").items()
    assert not others
    props = bucket["Properties"]
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    if stack == PRODUCTION:  # deploys to another account, which reads artifacts with this key
        (key_id,) = template.find_resources(
            "AWS::KMS::Key", {"Properties": {"Description": "Pipeline artifacts"}}
        )
        assert encryption["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
        }
    else:
        assert encryption == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
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
                            )
                        ]
                    )
                }
            ),
        },
    )
    (pipeline,) = template.find_resources("AWS::CodePipeline::Pipeline").values()
    assert pipeline["Properties"]["ArtifactStore"]["Location"] == {"Ref": bucket_id}


def test_stage_stacks_are_the_environments_stacks(template_paths, template_json):
    # What the pipeline deploys is what `cdk deploy` of the environment deploys.
    for stage_stack, standalone in (
        (f"{PRODUCTION}/Test/aiproxy-test", "aiproxy-test"),
        (f"{PRODUCTION}/Production/aiproxy", "aiproxy"),
        (f"{DEVELOPMENT}/Development/aiproxy-dev-example-branch", "aiproxy-dev-example-branch"),
    ):
        staged, direct = template_json(stage_stack), template_json(standalone)
        assert staged["Outputs"]["Url"] == direct["Outputs"]["Url"]
        assert Counter(r["Type"] for r in staged["Resources"].values()) == Counter(
            r["Type"] for r in direct["Resources"].values()
        )
