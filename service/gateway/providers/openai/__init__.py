"""An OpenAI-compatible upstream (OpenAI, Azure OpenAI, vLLM, Ollama, ...): base URL, key,
timeouts, retries, and relaying to it.

Routes never build provider requests themselves; they hand a `RelayRequest` to `relay()` (the
client's body goes upstream byte for byte, the answer comes back unchanged, a stream event by
event) or a composed chat to `complete()`. Every failure is a `service.core.errors.ProviderError`.

- `client`: `OpenAICompatible`, the calls routes make, and the retry loop: non-streaming requests
  are retried on 429/500/502/503/504 and on connection errors, with exponential backoff and
  jitter, honouring `Retry-After`; a stream only while opening (before the first byte reaches the
  client), never afterwards; a read timeout never (the caller has already waited it once).
- `headers`: the headers a request sends, the upstream's a client gets, `Retry-After` read.
- `errors`: what an upstream's error answer or a transport failure becomes in the ProviderError tree.
- `decoding`: undoing a Content-Encoding the upstream used although asked for none.
- `stream`: an open stream read as whole events, usage noted (and hidden when the proxy asked
  for it), the key blanked out.

What the client sees of the upstream is filtered: only an allow-list of its answer headers, and
the provider key blanked out of bodies, events and header values, in case an upstream echoes it
(`service.gateway.redaction`: in any JSON spelling, and split across stream events). Everything
read from an upstream is redacted before anything parses it, so grading, error messages and log
lines built from it never hold the key either.
"""

from service.gateway.providers.openai.client import OpenAICompatible

__all__ = ["OpenAICompatible"]
