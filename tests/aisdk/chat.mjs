// Drives Genie's /api/chat with the AI SDK's own chat client, as `useChat` does.
//
//   node chat.mjs <base url> '<headers json>' <chat id> '<steps json>'
//
// The client is the `ai` package's `AbstractChat` (the class `useChat` and every framework
// binding subclass) over an in-memory state, with a `DefaultChatTransport` at
// `<base>/api/chat` and `sendAutomaticallyWhen` sending approvals and client tool outputs
// back, as an app would configure it. Steps, in order:
//   {"send": "text"}                    sendMessage({text})
//   {"send": "text", "drop": "<type>"}  ... and the connection drops after the first chunk of that type
//   {"send": "text", "stop": "<type>"}  ... and chat.stop() + POST /api/chat/{id}/stop after it
//   {"resume": true}                    resumeStream() (GET /api/chat/{id}/stream)
//   {"approve": true|false, "reason"?}  addToolApprovalResponse on the pending approval
//   {"output": {...}}                   addToolOutput on the pending client tool call
//   {"regenerate": true}                regenerate()
//   {"load": true}                      a new Chat with GET /api/chat/{id}/messages as its messages
// Prints {steps: [{status, error, finishReason, requests, messages}]} as JSON.
//
// AI_PACKAGE names the client package: "ai" (v7, the default) or "ai6" (v6, installed
// beside it as an npm alias): the same flows run with both.
const {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  lastAssistantMessageIsCompleteWithToolCalls,
} = await import(process.env.AI_PACKAGE || "ai");

class MemoryChatState {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), this.snapshot(message), ...this.messages.slice(index + 1)];
  };
  snapshot = (value) => structuredClone(value);
}

class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new MemoryChatState(messages) });
  }
}

const [base, rawHeaders, chatId, rawSteps] = process.argv.slice(2);
const headers = JSON.parse(rawHeaders);
const api = `${base}/api/chat`;
const requests = [];
let cut = null; // {type, action}: what the next response does after the first chunk of `type`
let chat;
let finishReason;
let stopping = null; // the stop POST in flight: it answers once the worker honoured the stop

// Records each request (method, status) and, when asked, drops or stops the response.
async function tracingFetch(url, init) {
  const response = await fetch(url, init);
  requests.push({ method: init?.method ?? "GET", url: String(url), status: response.status });
  if (cut == null || response.body == null) return response;
  const { type, action } = cut;
  cut = null;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  const body = new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      seen += decoder.decode(value, { stream: true });
      const at = seen.indexOf(`"type":"${type}"`);
      if (at === -1) return controller.enqueue(value);
      const end = seen.indexOf("\n\n", at);
      controller.enqueue(new TextEncoder().encode(seen.slice(0, end + 2)));
      seen = null;
      reader.cancel().catch(() => {});
      if (action === "drop") controller.error(new TypeError("network error"));
      else {
        setTimeout(() => {
          stopping = stopChat().catch(() => {});
        }, 0);
        controller.close();
      }
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

async function stopChat() {
  await chat.stop();
  const response = await fetch(`${api}/${encodeURIComponent(chatId)}/stop`, { method: "POST", headers });
  requests.push({ method: "POST", url: `${api}/${chatId}/stop`, status: response.status });
}

function newChat(messages = []) {
  return new Chat({
    id: chatId,
    messages,
    transport: new DefaultChatTransport({ api, headers, fetch: tracingFetch }),
    sendAutomaticallyWhen: async ({ messages: all }) =>
      lastAssistantMessageIsCompleteWithApprovalResponses({ messages: all }) ||
      lastAssistantMessageIsCompleteWithToolCalls({ messages: all }),
    onFinish: ({ finishReason: reason }) => {
      finishReason = reason;
    },
  });
}

// Until the chat is idle: automatic sends start after the call that triggered them returns.
async function settle() {
  let idleFor = 0;
  for (let waited = 0; waited < 30000 && idleFor < 200; waited += 20) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    idleFor = chat.status === "submitted" || chat.status === "streaming" ? 0 : idleFor + 20;
  }
}

function pendingTool(...states) {
  for (const message of chat.messages.toReversed()) {
    const part = message.parts.find((p) => p.toolCallId != null && states.includes(p.state));
    if (part) return part;
  }
  throw new Error(`no tool part in state ${states}`);
}

async function main() {
  chat = newChat();
  const steps = [];
  for (const step of JSON.parse(rawSteps)) {
    finishReason = undefined;
    requests.length = 0;
    if (step.send != null) {
      if (step.drop) cut = { type: step.drop, action: "drop" };
      if (step.stop) cut = { type: step.stop, action: "stop" };
      await chat.sendMessage({ text: step.send });
    } else if (step.resume) {
      await chat.resumeStream();
    } else if (step.approve != null) {
      const part = pendingTool("approval-requested");
      await chat.addToolApprovalResponse({ id: part.approval.id, approved: step.approve, reason: step.reason });
    } else if (step.output != null) {
      // A client tool waits input-available, or approval-responded when it needed an approval first.
      const part = pendingTool("input-available", "approval-responded");
      await chat.addToolOutput({ tool: part.type.slice(5), toolCallId: part.toolCallId, output: step.output });
    } else if (step.regenerate) {
      await chat.regenerate();
    } else if (step.load) {
      const response = await fetch(`${api}/${encodeURIComponent(chatId)}/messages`, { headers });
      chat = newChat(await response.json());
    }
    await settle();
    if (stopping) await stopping;
    stopping = null;
    steps.push({
      status: chat.status,
      error: chat.error?.message,
      finishReason,
      requests: [...requests],
      messages: structuredClone(chat.messages),
    });
  }
  process.stdout.write(JSON.stringify({ steps }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
