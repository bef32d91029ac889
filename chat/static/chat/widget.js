// The embeddable widget, served as /widget.js after client.js (one closure):
//   <script src="https://genie.example.com/widget.js" data-key="pk_live_…" async></script>
// Options (data-*): key (a publishable key listing this page's origin), agent (a public
// agent's handle; the default agent otherwise), title, user-id. The API is the script's own
// origin. The widget lives in a shadow root (the host page's CSS does not leak in or out) and
// shows the model's text as plain text: no HTML from a model reaches the host page.
// The host page may run client tools: GenieWidget.clientTools.navigate = async (input) => …
const GenieWidget = (() => {
  const script = document.currentScript;
  const options = script.dataset;
  const API = `${new URL(script.src).origin}/api/v1`;
  // Only a publishable key belongs on a public page. Anything else (a pasted secret key) is
  // never sent: the widget shows that the chat is not available.
  const usable = (options.key || "").startsWith("pk_live_");
  const storageKey = `genie-widget:${usable ? options.key.slice(0, 24) : ""}:${options.agent || ""}`;
  const clientTools = {};

  const STYLE = `
    :host { all: initial; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    .launcher { position: fixed; right: 1rem; bottom: 1rem; z-index: 2147483000; border-radius: 2rem; padding: .7rem 1.1rem;
      border: 0; background: #2456c7; color: #fff; font: inherit; font-weight: 600; cursor: pointer; box-shadow: 0 2px 8px rgba(0,0,0,.25); }
    .panel { position: fixed; right: 1rem; bottom: 4.5rem; z-index: 2147483000; width: min(24rem, calc(100vw - 2rem));
      height: min(34rem, calc(100vh - 6rem)); display: flex; flex-direction: column; background: #fff; border: 1px solid #d8dbe0;
      border-radius: .8rem; box-shadow: 0 4px 24px rgba(0,0,0,.2); overflow: hidden; }
    header { display: flex; align-items: center; padding: .5rem .75rem; background: #2456c7; color: #fff; }
    h2 { font-size: 1rem; margin: 0; flex: 1; }
    button { font: inherit; font-size: .9rem; border: 1px solid #d8dbe0; border-radius: .4rem; background: #fff; padding: .35rem .7rem;
      cursor: pointer; min-height: 2.2rem; color: inherit; }
    button.primary { background: #2456c7; border-color: #2456c7; color: #fff; }
    button:disabled { opacity: .5; }
    header button { background: transparent; border: 0; color: #fff; font-size: 1.3rem; min-width: 2.2rem; }
    :focus-visible { outline: 3px solid #f29900; outline-offset: 2px; }
    ol { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: .75rem; display: flex; flex-direction: column; gap: .6rem; }
    li { max-width: 90%; padding: .5rem .7rem; border-radius: .6rem; white-space: pre-wrap; overflow-wrap: anywhere; }
    li.user { align-self: flex-end; background: #dfe7fb; }
    li.agent { align-self: flex-start; background: #f4f5f7; }
    .tool { font-size: .85rem; border: 1px solid #d8dbe0; border-radius: .4rem; padding: .3rem .5rem; margin: .3rem 0; background: #fff; white-space: normal; }
    .actions { display: flex; gap: .4rem; margin-top: .3rem; flex-wrap: wrap; }
    .note { color: #5f6368; font-size: .8rem; margin: .2rem 0 0; }
    .status { margin: 0; padding: 0 .75rem; font-size: .8rem; color: #5f6368; min-height: 1.1rem; }
    .status.error { color: #b3261e; }
    form { display: flex; gap: .4rem; padding: .5rem .75rem .75rem; align-items: flex-end; }
    textarea { flex: 1; font: inherit; padding: .45rem; border: 1px solid #d8dbe0; border-radius: .4rem; resize: none; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
    .rating { display: flex; gap: .3rem; margin-top: .3rem; }
    .thumb { display: inline-flex; align-items: center; } .thumb.negative svg { transform: rotate(180deg); }
    .rating button[aria-pressed="true"] { background: #dfe7fb; border-color: #2456c7; }
  `;

  const host = document.createElement("div");
  host.id = "genie-widget";
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `
    <style>${STYLE}</style>
    <button type="button" class="launcher" aria-expanded="false" aria-controls="panel"></button>
    <section class="panel" id="panel" role="dialog" aria-labelledby="title" hidden>
      <header><h2 id="title"></h2><button type="button" class="close" aria-label="Close the chat">×</button></header>
      <ol class="messages" aria-label="Conversation"></ol>
      <p class="status" role="status" aria-live="polite"></p>
      <form>
        <label for="text" class="visually-hidden">Message</label>
        <textarea id="text" rows="2" placeholder="Type a message"></textarea>
        <button type="button" class="stop" hidden>Stop</button>
        <button type="submit" class="primary send">Send</button>
      </form>
    </section>`;
  const $ = (selector) => root.querySelector(selector);
  const ui = {
    launcher: $(".launcher"),
    panel: $(".panel"),
    close: $(".close"),
    messages: $(".messages"),
    status: $(".status"),
    form: $("form"),
    text: $("textarea"),
    send: $(".send"),
    stop: $(".stop"),
  };
  const title = options.title || "Chat";
  ui.launcher.textContent = title;
  $("#title").textContent = title;

  let saved = usable ? JSON.parse(sessionStorage.getItem(storageKey) || "null") : null; // {uuid, secret, open}
  let loaded = false;
  let following = null;

  const headers = () => {
    const auth = usable ? { Authorization: `Bearer ${options.key}` } : {};
    if (saved) auth["X-Session-Secret"] = saved.secret;
    return auth;
  };
  // A path under the API, or a URL from an event: sent to the API's origin either way.
  const url = (path) => GenieClient.apiUrl(API, path);
  const call = (path, init = {}) =>
    GenieClient.request(url(path), {
      ...init,
      headers: { ...headers(), ...(init.headers || {}) },
    });
  const remember = () => sessionStorage.setItem(storageKey, JSON.stringify(saved));

  function announce(text, error = false) {
    ui.status.textContent = text;
    ui.status.classList.toggle("error", error);
  }
  function explain(error) {
    // A refused origin never reaches a JSON body: the browser blocks the response (CORS).
    announce(error instanceof TypeError ? "The chat is not available on this site." : error.message, true);
  }

  function item(role) {
    const li = document.createElement("li");
    li.className = role;
    ui.messages.append(li);
    ui.messages.scrollTop = ui.messages.scrollHeight;
    return li;
  }

  function button(label, onClick, className = "") {
    const el = document.createElement("button");
    el.type = "button";
    el.textContent = label;
    el.className = className;
    el.addEventListener("click", onClick);
    return el;
  }

  const agentItems = new Map(); // message uuid → {li, message, stored}

  function draw(view) {
    const { li, message } = view;
    li.replaceChildren();
    li.setAttribute("aria-busy", String(message.state === "streaming"));
    for (const part of message.parts) {
      if (part.kind === "text") {
        li.append(part.text);
        continue;
      }
      const box = document.createElement("div");
      box.className = "tool";
      box.textContent = `${part.name}: ${GenieClient.TOOL_STATES[part.state] || part.state}`;
      if (part.approval) {
        const decide = (approved) => () =>
          call(part.approval.url, { method: "POST", json: { approved } }).catch(explain);
        const actions = document.createElement("div");
        actions.className = "actions";
        actions.append(button("Approve", decide(true), "primary"), button("Deny", decide(false)));
        box.append(actions);
      }
      if (part.clientCall && !part.running) runClientTool(part);
      li.append(box);
    }
    if (message.state === "stopped") li.append(note("Stopped."));
    if (message.state === "error") li.append(note(message.errorText));
    if (message.cut) li.append(note(GenieClient.CUT_NOTE));
    if (message.state !== "streaming" && view.stored && view.stored.feedback_url) li.append(rating(view.stored));
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = text;
    return p;
  }

  function rating(stored) {
    const group = document.createElement("div");
    group.className = "rating";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Rate this reply");
    for (const [value, name] of [["positive", "Good reply"], ["negative", "Bad reply"]]) {
      const thumb = button("", async () => {
        try {
          stored.feedback = await call(stored.feedback_url, { method: "POST", json: { rating: value } });
          for (const other of group.children) other.setAttribute("aria-pressed", String(other === thumb));
          announce("Thanks for the feedback.");
        } catch (error) {
          explain(error);
        }
      });
      thumb.innerHTML = GenieClient.THUMB_SVG; // a constant of ours, not model text
      thumb.className = `thumb ${value}`;
      thumb.setAttribute("aria-label", name);
      thumb.setAttribute("aria-pressed", String(Boolean(stored.feedback && stored.feedback.rating === value)));
      group.append(thumb);
    }
    return group;
  }

  // Run a client tool the host page registered, once: a replayed call that was answered
  // is no longer among the session's pending actions.
  async function runClientTool(part) {
    part.running = true;
    for (let attempt = 0; attempt < 5 && part.clientCall; attempt += 1) {
      const detail = await call(`sessions/${saved.uuid}`);
      if (detail.pending_actions.some((action) => action.call_id === part.callId)) {
        const handler = clientTools[part.name];
        let body;
        try {
          body = handler ? { output: await handler(part.input) } : { error: `This page cannot run ${part.name}.` };
        } catch (error) {
          body = { error: String((error && error.message) || error) };
        }
        await call(part.clientCall.url, { method: "POST", json: body }).catch(() => {});
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  function agentView(uuid) {
    let view = agentItems.get(uuid);
    if (!view) {
      view = { li: item("agent"), message: GenieClient.newMessage(uuid), stored: null };
      agentItems.set(uuid, view);
    }
    return view;
  }

  // Follow a stream to its run's finish; resolves its outcome ("finished", "idle"), or null.
  async function follow(streamUrl) {
    if (following) following.abort();
    const controller = new AbortController();
    following = controller;
    ui.send.disabled = true;
    ui.stop.hidden = false;
    let view = null;
    try {
      const result = await GenieClient.follow({
        url: url(streamUrl),
        headers: headers(),
        signal: controller.signal,
        onChunk(chunk) {
          if (chunk.type === "start") view = agentView(chunk.messageId);
          if (!view) return;
          GenieClient.applyChunk(view.message, chunk);
          draw(view);
        },
      });
      if (result.outcome === "finished" && view) {
        view.stored = await call(`sessions/${saved.uuid}/messages/${view.message.id}`);
        draw(view);
      }
      return result.outcome;
    } catch (error) {
      if (!controller.signal.aborted) explain(error);
      return null;
    } finally {
      if (following === controller) {
        following = null;
        ui.send.disabled = false;
        ui.stop.hidden = true;
      }
    }
  }

  function showStored(stored) {
    if (stored.sender_role === "user") {
      item("user").textContent = stored.text;
      return;
    }
    const view = agentView(stored.uuid);
    view.message = GenieClient.fromTranscript(stored);
    view.stored = stored;
    draw(view);
  }

  async function load() {
    loaded = true;
    if (!saved) return;
    try {
      for (let page = `sessions/${saved.uuid}/messages?page_size=100`; page; ) {
        const batch = await call(page);
        for (const stored of batch.results) showStored(stored);
        page = batch.next;
      }
    } catch (error) {
      if (error.status === 404) {
        // The session is gone (deleted, or the key was replaced): start afresh.
        saved = null;
        sessionStorage.removeItem(storageKey);
        return;
      }
      explain(error);
      return;
    }
    // A reply still running is replayed, then followed. One whose run ended between reading
    // the messages and opening the stream (204) is read again, once.
    const outcome = await follow(`sessions/${saved.uuid}/stream`);
    if (outcome !== "idle") return;
    try {
      for (const view of [...agentItems.values()]) {
        if (view.message.state !== "streaming") continue;
        showStored(await call(`sessions/${saved.uuid}/messages/${view.message.id}`));
      }
    } catch (error) {
      explain(error);
    }
  }

  async function send(event) {
    event.preventDefault();
    const text = ui.text.value;
    if (!text.trim() || !usable) return;
    ui.send.disabled = true;
    const idempotency = { "Idempotency-Key": crypto.randomUUID() };
    try {
      let started;
      if (saved) {
        started = await call(`sessions/${saved.uuid}/messages`, { method: "POST", headers: idempotency, json: { text } });
      } else {
        const body = { text };
        if (options.agent) body.agent = options.agent;
        if (options.userId) body.user_id = options.userId;
        started = await call("sessions", { method: "POST", headers: idempotency, json: body });
        saved = { uuid: started.uuid, secret: started.client_secret, open: true };
        remember();
      }
      ui.text.value = "";
      item("user").textContent = text;
      announce("");
      await follow(`${started.run_url}/stream`);
    } catch (error) {
      ui.send.disabled = false;
      explain(error);
    }
  }

  function open() {
    ui.panel.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "true");
    if (saved) {
      saved.open = true;
      remember();
    }
    if (!loaded) load();
    ui.text.focus();
  }

  function close() {
    ui.panel.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "false");
    if (saved) {
      saved.open = false;
      remember();
    }
    ui.launcher.focus();
  }

  ui.launcher.addEventListener("click", () => (ui.panel.hidden ? open() : close()));
  ui.close.addEventListener("click", close);
  ui.panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
  ui.form.addEventListener("submit", send);
  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!ui.send.disabled) ui.form.requestSubmit();
    }
  });
  ui.stop.addEventListener("click", () =>
    call(`sessions/${saved.uuid}/stream/stop`, { method: "POST" }).catch(explain),
  );

  if (!usable) {
    console.error("Genie widget: data-key must be a publishable key (pk_live_…); it was not sent.");
    announce("The chat is not available on this site.", true);
    ui.text.disabled = true;
    ui.send.disabled = true;
  }

  const mount = () => {
    document.body.append(host);
    if (saved && saved.open) open();
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  return { open, close, clientTools };
})();
window.GenieWidget = GenieWidget;
