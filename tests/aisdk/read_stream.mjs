// Reads one Genie stream with the real AI SDK client and prints what it assembled.
//
//   node read_stream.mjs <stream url> '<headers as a JSON object>'
//
// The stream is fetched and parsed exactly as `useChat({ resume: true })` does it:
// `DefaultChatTransport.reconnectToStream` (GET, 204 = nothing, non-2xx throws; the SDK's
// SSE parser `parseJsonEventStream` + `uiMessageChunkSchema`, a chunk failing the schema
// throws), then `readUIMessageStream` assembles the UIMessage (it enforces the chunk
// ordering: a delta before its start, an output for an unknown tool call... throw).
//
// Prints {message, toolStates, chunkTypes} as JSON on stdout, where toolStates lists, per
// toolCallId, the states its part went through. Exit codes:
//   0  the stream was read and the assembled message passes `validateUIMessages`;
//   1  the SDK refused the stream (HTTP status, SSE/JSON, chunk schema, chunk order):
//      the error on stderr, nothing on stdout;
//   3  the stream was read, but the UIMessage the SDK assembled from it fails the SDK's
//      own `validateUIMessages` (so the message could not be sent back to an AI SDK
//      server): the JSON on stdout, the validation error on stderr.
import { DefaultChatTransport, readUIMessageStream, validateUIMessages } from "ai";

async function main() {
  const [url, rawHeaders = "{}"] = process.argv.slice(2);
  if (!url) throw new Error("usage: node read_stream.mjs <stream url> '<headers json>'");
  const headers = JSON.parse(rawHeaders);

  const transport = new DefaultChatTransport({
    api: url,
    prepareReconnectToStreamRequest: () => ({ api: url, headers }),
  });
  const chunks = await transport.reconnectToStream({ chatId: "genie" });
  if (chunks == null) throw new Error(`${url} answered 204: no stream to read`);

  const chunkTypes = [];
  const recorded = chunks.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunkTypes.push(chunk.type);
        controller.enqueue(chunk);
      },
    }),
  );

  let message;
  const toolStates = {};
  for await (const snapshot of readUIMessageStream({ stream: recorded, terminateOnError: true })) {
    message = snapshot;
    for (const part of snapshot.parts) {
      if (part.toolCallId == null) continue;
      const states = (toolStates[part.toolCallId] ??= []);
      if (states[states.length - 1] !== part.state) states.push(part.state);
    }
  }
  if (message == null) throw new Error("the stream held no UI message chunk");
  process.stdout.write(JSON.stringify({ message, toolStates, chunkTypes }) + "\n");
  // The assembled message must itself be a valid UIMessage for the SDK.
  try {
    await validateUIMessages({ messages: [message] });
  } catch (error) {
    report(error);
    process.exitCode = 3;
  }
}

function report(error) {
  process.stderr.write(`${error?.name ?? "Error"}: ${error?.message ?? error}\n`);
  if (error?.cause) process.stderr.write(`cause: ${error.cause?.message ?? error.cause}\n`);
  if (error?.stack) process.stderr.write(`${error.stack}\n`);
}

main().catch((error) => {
  report(error);
  process.exit(1);
});
