// The peer users compare Genie with: Vercel's resumable-stream relaying the same fake LLM,
// behind a bare Node HTTP server (no framework, no database, no queue).
//
//   POST /chat/<id>         starts the model's stream and answers with it (the AI SDK's route shape)
//   POST /chat/<id>/start   starts it and drains it in the server (for benchmarks whose readers all resume)
//   GET  /chat/<id>         resumes it: 200 with the stream, or 204 when it is done
//
// Environment: PORT, REDIS_URL, FAKE_LLM_URL (…/v1), MODEL.
import http from "node:http";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const { PORT = "0", REDIS_URL, FAKE_LLM_URL, MODEL } = process.env;

const publisher = createClient({ url: REDIS_URL });
const subscriber = createClient({ url: REDIS_URL });
await Promise.all([publisher.connect(), subscriber.connect()]);
const streams = createResumableStreamContext({
  waitUntil: null,
  publisher,
  subscriber,
  keyPrefix: `genie-bench-peer-${process.pid}`,
});

const sse = (event) => `data: ${JSON.stringify(event)}\n\n`;

// The fake LLM's OpenAI stream as UI message stream events (text-delta … finish).
function modelStream() {
  return new ReadableStream({
    async start(controller) {
      const response = await fetch(`${FAKE_LLM_URL}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, stream: true, messages: [] }),
      });
      controller.enqueue(sse({ type: "start" }));
      const decoder = new TextDecoder();
      let pending = "";
      for await (const bytes of response.body) {
        pending += decoder.decode(bytes, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop();
        for (const line of lines) {
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const delta = JSON.parse(line.slice(6)).choices?.[0]?.delta?.content;
          if (delta) controller.enqueue(sse({ type: "text-delta", id: "t", delta }));
        }
      }
      controller.enqueue(sse({ type: "finish" }));
      controller.close();
    },
  });
}

async function pipe(stream, res) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  for await (const chunk of stream) {
    if (!res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
  }
  res.end();
}

const server = http.createServer(async (req, res) => {
  const match = req.url.match(/^\/chat\/([\w-]+)(\/start)?$/);
  if (!match) {
    res.writeHead(404).end();
    return;
  }
  const [, id, start] = match;
  try {
    if (req.method === "POST") {
      const stream = await streams.createNewResumableStream(id, modelStream);
      if (start) {
        res.writeHead(202).end();
        for await (const _ of stream); // the first reader, inside the server
      } else {
        await pipe(stream, res);
      }
    } else {
      const stream = await streams.resumeExistingStream(id);
      if (!stream) res.writeHead(204).end();
      else await pipe(stream, res);
    }
  } catch (error) {
    if (!res.headersSent) res.writeHead(500).end(String(error));
  }
});
server.listen(Number(PORT), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
