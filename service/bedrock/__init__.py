"""Amazon Bedrock behind the OpenAI chat-completions API (models named `bedrock/<model id>`).

`translate` and `stream` convert the shapes (plain data); `client` calls Converse and
ConverseStream with boto3 and maps every failure to the status a client should see.
"""

from service.bedrock.client import BedrockClient, BedrockError, BedrockStream, bedrock_client, completer

__all__ = ["BedrockClient", "BedrockError", "BedrockStream", "bedrock_client", "completer"]
