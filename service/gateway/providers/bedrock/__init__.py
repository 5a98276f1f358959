"""Amazon Bedrock behind the OpenAI chat-completions API (models named `bedrock/<model id>`).

`translate` and `stream` convert the shapes (plain data); `client` calls Converse and
ConverseStream with boto3 and raises the provider errors of `service.core.errors` for every failure.
"""

from service.gateway.providers.bedrock.client import BedrockProvider

__all__ = ["BedrockProvider"]
