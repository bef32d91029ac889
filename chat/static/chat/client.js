// Genie's browser client, shared by the chat page (loaded as a static file) and the
// widget (/widget.js joins it in front of widget.js inside one closure): JSON requests with
// the one error format, a stream reader that resumes with Last-Event-ID, and the reducer
// that turns AI SDK UI message stream chunks into a message's parts.
// Plain JavaScript, no build step; the top-level const is the only name it defines.
const GenieClient = (() => {
  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `The server answered ${status}.`);
      this.status = status;
      this.code = error.code || "http_" + status;
      this.details = error.details || {};
    }
  }

  async function errorOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // not JSON (a proxy's page): the status says enough
    }
    return new ApiError(response.status, body);
  }

  // A request to the API: ``json`` is sent as JSON, ``body`` as is (FormData for uploads).
  async function request(url, { method = "GET", headers = {}, json, body } = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers } };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.body = body;
    }
    const response = await fetch(url, init);
    if (!response.ok) throw await errorOf(response);
    return response.status === 204 ? null : response.json();
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ``path`` under the API root ``base`` ("/api/v1", or a full URL for the widget), or a URL
  // the server sent (built on its public URL, e.g. an event's approval_url): either way on
  // ``base``'s own origin. Of a server's URL only the path and query are kept, so requests
  // carrying the page's cookie or key go only to the API the page already talks to.
  function apiUrl(base, path) {
    const root = new URL(base, location.href);
    if (!/^https?:/i.test(path)) return `${root.href.replace(/\/$/, "")}/${path}`;
    const given = new URL(path);
    return root.origin + given.pathname + given.search;
  }

  // Server-Sent Events of a fetch response, one {id, data, retry} per event block; ``data``
  // is the raw text (undefined for none or "[DONE]"). It throws only what the network does.
  async function* parse(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = { id: null, data: undefined, retry: null };
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue; // comments: ": ok", heartbeats, ": interrupted…"
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            let text = colon < 0 ? "" : line.slice(colon + 1);
            if (text.startsWith(" ")) text = text.slice(1);
            if (field === "id") event.id = Number(text);
            else if (field === "data") data.push(text);
            else if (field === "retry") event.retry = Number(text);
          }
          if (data.length && data.join("\n") !== "[DONE]") event.data = data.join("\n");
          yield event;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // Follow a stream until its run's ``finish``. A stream that ends without it (a dropped
  // connection, a server restart's ": interrupted" comment) is resumed with Last-Event-ID,
  // so every event reaches ``onChunk`` once and in order. ``resumable: false`` for a POST's
  // own stream (compaction): sending the POST again is no resume (its run's own stream, on
  // the answer's ``Location``, is).
  // Resolves {outcome: "finished" | "idle" (204: nothing to follow), lastEventId}.
  // Only a network error (or a stream's end) is resumed; a chunk that is not JSON, or an
  // error thrown by ``onChunk``, is logged and rejects, so no chunk is skipped or retried
  // forever. ``lastEventId`` passes an event only once ``onChunk`` has taken it.
  async function follow({
    url,
    method = "GET",
    headers = {},
    json,
    lastEventId = null,
    onChunk,
    signal,
    resumable = true,
    maxAttempts = 20,
  }) {
    let retryMs = 1000;
    let attempts = 0;
    for (;;) {
      const init = { method, signal, headers: { ...headers, Accept: "text/event-stream" } };
      if (json !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(json);
      }
      if (lastEventId !== null) init.headers["Last-Event-ID"] = String(lastEventId);
      let response = null;
      try {
        response = await fetch(url, init);
      } catch (error) {
        if (signal && signal.aborted) throw error;
        // a network error: resumed below
      }
      if (response && response.status === 204) return { outcome: "idle", lastEventId };
      if (response && !response.ok) throw await errorOf(response);
      if (response) {
        const events = parse(response);
        try {
          for (;;) {
            let next;
            try {
              next = await events.next();
            } catch (error) {
              if (signal && signal.aborted) throw error;
              break; // the connection dropped: resumed below
            }
            if (next.done) break;
            const event = next.value;
            if (event.retry) retryMs = event.retry;
            if (event.data !== undefined) {
              let chunk;
              try {
                chunk = JSON.parse(event.data);
                onChunk(chunk, event.id);
              } catch (error) {
                console.error("Genie: a stream event could not be shown.", event, error);
                throw error;
              }
              attempts = 0;
              if (event.id !== null) lastEventId = event.id;
              if (chunk.type === "finish") return { outcome: "finished", lastEventId };
            } else if (event.id !== null) {
              lastEventId = event.id;
            }
          }
        } finally {
          events.return().catch(() => {}); // cancels the reader if the loop left early
        }
      }
      if (!resumable) throw new ApiError(0, { error: { message: "The stream ended early." } });
      attempts += 1;
      if (attempts > maxAttempts) throw new ApiError(0, { error: { message: "The stream keeps dropping." } });
      await sleep(Math.min(retryMs * attempts, 10000));
    }
  }

  // The state of one agent message as its chunks arrive. Parts: {kind: "text", id, text}
  // and {kind: "tool", callId, name, input, state, output, errorText, approval, clientCall,
  // connection}. ``state``: streaming, done, stopped or error; ``cut``: the reply stopped at
  // the token limit (a ``finish`` with finishReason "length", or a stored ``incomplete``).
  function newMessage(id) {
    return { id, parts: [], state: "streaming", errorText: "", compaction: null, cut: false };
  }

  function toolPart(message, callId, name) {
    let part = message.parts.find((p) => p.kind === "tool" && p.callId === callId);
    if (!part) {
      part = { kind: "tool", callId, name: name || "tool", input: undefined, state: "preparing" };
      message.parts.push(part);
    }
    if (name) part.name = name;
    return part;
  }

  function textPart(message, id) {
    let part = message.parts.find((p) => p.kind === "text" && p.id === id);
    if (!part) {
      part = { kind: "text", id, text: "" };
      message.parts.push(part);
    }
    return part;
  }

  // Apply one chunk; returns the part it changed (or null). ``start`` empties the message:
  // a stream replayed from its start (a reload) rebuilds it instead of adding to it.
  function applyChunk(message, chunk) {
    const data = chunk.data || {};
    switch (chunk.type) {
      case "start":
        message.parts = [];
        message.state = "streaming";
        message.errorText = "";
        message.cut = false;
        if (chunk.messageId) message.id = chunk.messageId;
        return null;
      case "text-start":
        return textPart(message, chunk.id);
      case "text-delta": {
        const part = textPart(message, chunk.id);
        part.text += chunk.delta;
        return part;
      }
      case "tool-input-start":
        return toolPart(message, chunk.toolCallId, chunk.toolName);
      case "tool-input-available":
        return Object.assign(toolPart(message, chunk.toolCallId, chunk.toolName), {
          input: chunk.input,
          state: "running",
        });
      case "tool-approval-request":
        return Object.assign(toolPart(message, chunk.toolCallId), { state: "awaiting-approval" });
      case "data-approval-required":
        return Object.assign(toolPart(message, data.call_id, data.tool_name), {
          input: data.input,
          state: "awaiting-approval",
          approval: { url: data.approval_url },
        });
      case "tool-approval-response":
        return Object.assign(toolPart(message, chunk.approvalId), {
          state: chunk.approved ? "running" : "denied",
          approval: null,
        });
      case "data-client-tool-call":
        return Object.assign(toolPart(message, data.call_id, data.tool_name), {
          input: data.input,
          state: "awaiting-result",
          clientCall: { url: data.result_url },
        });
      case "data-connection-auth-required":
        return Object.assign(toolPart(message, data.call_id), {
          state: "awaiting-connection",
          connection: { provider: data.provider, url: data.auth_link && data.auth_link.url, rejectUrl: data.reject_url },
        });
      case "data-connection-auth-success": {
        const part = message.parts.find((p) => p.connection && p.connection.provider === data.provider);
        if (part) Object.assign(part, { state: "running", connection: null });
        return part || null;
      }
      case "tool-output-available":
        return Object.assign(toolPart(message, chunk.toolCallId), {
          state: "succeeded",
          output: chunk.output,
          approval: null,
          clientCall: null,
          connection: null,
        });
      case "tool-output-error":
        return Object.assign(toolPart(message, chunk.toolCallId), {
          state: "failed",
          errorText: chunk.errorText,
          approval: null,
          clientCall: null,
          connection: null,
        });
      case "tool-output-denied":
        return Object.assign(toolPart(message, chunk.toolCallId), { state: "denied", approval: null, clientCall: null });
      case "data-compaction":
        message.compaction = data;
        return null;
      case "error":
        message.state = "error";
        message.errorText = chunk.errorText || "The reply failed.";
        return null;
      case "abort":
        message.state = "stopped";
        return null;
      case "finish":
        if (message.state === "streaming") message.state = "done";
        if (chunk.finishReason === "length") message.cut = true;
        return null;
      default:
        return null; // start-step, finish-step, text-end, tool-input-delta: nothing to show
    }
  }

  // A stored agent message (the transcript's JSON) in the same shape.
  function fromTranscript(stored) {
    const message = newMessage(stored.uuid);
    const toolStates = { pending_approval: "awaiting-approval", awaiting_result: "awaiting-result" };
    for (const call of stored.tool_calls || []) {
      message.parts.push({
        kind: "tool",
        callId: call.call_id,
        name: call.tool_name,
        input: call.input,
        output: call.output,
        errorText: call.error || "",
        state: toolStates[call.status] || call.status,
      });
    }
    if (stored.text) message.parts.push({ kind: "text", id: "stored", text: stored.text });
    // pending and streaming: the run is still going (its stream replays and finishes it).
    const states = { complete: "done", incomplete: "done", stopped: "stopped", failed: "error" };
    message.state = states[stored.status] || "streaming";
    message.cut = stored.status === "incomplete";
    // A failed reply keeps its error (the stream's ``error`` chunk said the same live).
    if (stored.status === "failed") message.errorText = (stored.error && stored.error.message) || "The reply failed.";
    return message;
  }

  // Words for a tool part's state, shared by the page and the widget.
  const TOOL_STATES = {
    preparing: "preparing",
    running: "running",
    "awaiting-approval": "waiting for your approval",
    "awaiting-result": "waiting for this page",
    "awaiting-connection": "waiting for a connection",
    awaiting_connection: "waiting for a connection",
    succeeded: "done",
    failed: "failed",
    denied: "denied",
    expired: "expired",
  };

  // The rating buttons' icon (Material Design "thumb_up", Apache-2.0); thumbs down is it turned over.
  const THUMB_SVG =
    '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" focusable="false"><path fill="currentColor" ' +
    'd="M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 ' +
    '7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z"/></svg>';

  // The note under a reply cut by the token limit, shared by the page and the widget.
  const CUT_NOTE = "Cut at the token limit.";

  return { ApiError, apiUrl, request, follow, newMessage, applyChunk, fromTranscript, TOOL_STATES, THUMB_SVG, CUT_NOTE };
})();
