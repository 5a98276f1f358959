"""What gets deployed where: the CDK app's configuration, read from context and made into environments.

docs/deploying.md: a pipeline of branch B, of environment type `production`, deploys a test
environment and then production; of type `development`, one environment. The package, by job:

- config.py: the typed values (`AppConfig`, `EnvironmentTypeSettings`, `ServiceEnvironment`, ...)
  and `ConfigurationError`;
- naming.py: the naming rules (stack and DNS names from type and branch, which branches are refused);
- table.py: the settings of each environment type, as shared values and per-type differences;
- sizes.py: the task sizes Fargate can run;
- context.py: reading `AppConfig` from cdk.json and `cdk -c key=value`, and writing it back;
- deployment.py: a pipeline's environments and the `Deployment` one run of the app builds.

The names the stacks, the app and the tests use are imported from here.
"""

from infra_cdk.environments.config import (
    AppConfig,
    ConfigurationError,
    EnvironmentTypeSettings,
    ExistingVpc,
    ServiceEnvironment,
    TaskSize,
)
from infra_cdk.environments.context import cdk_json_context, config_from_context
from infra_cdk.environments.deployment import Deployment, deployment_from_context, service_environments
from infra_cdk.environments.naming import pipeline_stack_name, validate_branch
from infra_cdk.environments.table import ENVIRONMENT_TYPE_SETTINGS

__all__ = [
    "ENVIRONMENT_TYPE_SETTINGS",
    "AppConfig",
    "ConfigurationError",
    "Deployment",
    "EnvironmentTypeSettings",
    "ExistingVpc",
    "ServiceEnvironment",
    "TaskSize",
    "cdk_json_context",
    "config_from_context",
    "deployment_from_context",
    "pipeline_stack_name",
    "service_environments",
    "validate_branch",
]
