// The official OpenAI Node SDK against the proxy: node client.mjs <base URL> <client key>
// Runs each step in order and prints one JSON object with what the SDK returned or threw, which
// tests/e2e/test_node_client.py checks (it scripts the fake upstream behind the proxy first).
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const messages = [{ role: "user", content: "Hello from Node" }];

function thrown(error) {
  return {
    class: error.constructor.name,
    isAPIError: error instanceof OpenAI.APIError,
    isNotFound: error instanceof OpenAI.NotFoundError,
    isAuthentication: error instanceof OpenAI.AuthenticationError,
    status: error.status ?? null,
    code: error.code ?? null,
    message: error.message,
  };
}

// Run one after the other: the test scripted the upstream's answers in this order.
const steps = [
  ["chat", async () => {
    const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
    return { content: completion.choices[0].message.content, usage: completion.usage };
  }],
  ["stream", async () => {
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage = null;
    const finishReasons = [];
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? "";
        if (choice.finish_reason) finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    return { text, usage, finishReasons };
  }],
  ["streamHelper", async () => {
    // The SDK's own helper: it assembles the chunks and insists on a finish_reason per choice.
    const runner = client.chat.completions.stream({ model: "gpt-4o-mini", messages });
    const final = await runner.finalChatCompletion();
    return { content: final.choices[0].message.content, finishReason: final.choices[0].finish_reason };
  }],
  ["embeddings", async () => {
    // No encoding_format: the SDK asks for base64 and decodes it itself.
    const result = await client.embeddings.create({ model: "text-embedding-3-small", input: ["one", "two"] });
    return { dimensions: result.data.map((item) => item.embedding.length), first: result.data[0].embedding };
  }],
  ["notFound", async () => {
    await client.models.retrieve("no-such-model");
    return "no error";
  }],
  ["cutStream", async () => {
    const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true });
    const received = [];
    for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? null);
    return { received };
  }],
];

const results = {};
for (const [name, run] of steps) {
  try {
    results[name] = { ok: await run() };
  } catch (error) {
    results[name] = { error: thrown(error) };
  }
}
console.log(JSON.stringify(results));
