#!/usr/bin/env python3
"""CDK entry point: the stacks of one deployment, chosen by context.

    cdk synth  -c environment_type=development -c branch=mybranch
    cdk deploy aiproxy-dev-mybranch -c environment_type=development -c branch=mybranch

Defaults (no context) are the production pipeline of `main`; infra_cdk/environments/context.py
reads every context key (docs/deploying.md lists them).
"""

import aws_cdk as cdk

from infra_cdk.app import add_checks, build
from infra_cdk.environments import ConfigurationError, cdk_json_context, deployment_from_context

app = cdk.App()
try:
    deployment = deployment_from_context(app.node.try_get_context, cdk_json_context())
except ConfigurationError as error:
    raise SystemExit(f"aiproxy CDK app: {error}") from None
build(app, deployment)
add_checks(app)
app.synth()
