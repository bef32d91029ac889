// The embeddable widget, served as /widget.js after client.js and marked (one closure):
//   <script src="https://genie.example.com/widget.js" data-key="pk_live_…" async></script>
// Options (data-*): key (a publishable key listing this page's origin), agent (a public
// agent's handle; the default agent otherwise), title, user-id. The API is the script's own
// origin. The widget lives in a shadow root (the host page's CSS does not leak in or out).
// The host page may run client tools: GenieWidget.clientTools.navigate = async (input) => …

// Model text as Markdown, built as DOM nodes from marked's tokens (``marked.lexer``): no
// string of the model's ever goes through an HTML parser, so nothing it writes can become
// an element, an attribute or a script. This instead of sanitising HTML inside the shadow
// root: a shadow root is part of the host page's document (same origin, same cookies), and
// a sanitiser is a parser race to win on every release; here the only elements are the ones
// this code creates (p, strong, em, del, code, pre, blockquote, lists, tables, headings,
// links). Raw HTML in the text shows as text; images show as links, never loaded; links
// keep only http(s) and mailto addresses.
const GenieMarkdown = (() => {
  const SAFE_URL = /^(?:https?:|mailto:)/i;
  const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

  // marked keeps a text's character references as written (its HTML renderer leaves them
  // to the browser): the few an answer uses are decoded here, without a parser.
  function decode(text) {
    return text.replace(/&(#\d{1,7}|#x[0-9a-f]{1,6}|[a-z]+);/gi, (whole, name) => {
      if (name[0] !== "#") return ENTITIES[name.toLowerCase()] ?? whole;
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    });
  }

  function element(tag, children = []) {
    const el = document.createElement(tag);
    el.append(...children);
    return el;
  }

  function link(token) {
    const href = String(token.href || "").trim();
    if (!SAFE_URL.test(href)) return element("span", inline(token.tokens));
    const a = element("a", token.type === "image" ? [decode(token.text || href)] : inline(token.tokens));
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function inline(tokens = []) {
    const nodes = [];
    for (const token of tokens) {
      switch (token.type) {
        case "strong":
        case "em":
        case "del":
          nodes.push(element(token.type, inline(token.tokens)));
          break;
        case "codespan":
          nodes.push(element("code", [token.text]));
          break;
        case "br":
          nodes.push(element("br"));
          break;
        case "link":
        case "image":
          nodes.push(link(token));
          break;
        case "text":
          nodes.push(...(token.tokens ? inline(token.tokens) : [decode(token.text)]));
          break;
        case "checkbox":
          nodes.push(token.checked ? "☑ " : "☐ ");
          break;
        default: // escape, html (shown as the text it is), anything newer: its text
          nodes.push(token.type === "escape" ? token.text : token.raw ?? token.text ?? "");
      }
    }
    return nodes;
  }

  function cell(token, tag) {
    const el = element(tag, inline(token.tokens));
    if (token.align) el.style.textAlign = token.align; // one of left, center, right
    return el;
  }

  function block(tokens = []) {
    const nodes = [];
    for (const token of tokens) {
      switch (token.type) {
        case "space":
          break;
        case "paragraph":
          nodes.push(element("p", inline(token.tokens)));
          break;
        case "heading":
          nodes.push(element(`h${Math.min(Math.max(token.depth, 1), 6)}`, inline(token.tokens)));
          break;
        case "code": {
          const code = element("code", [token.text]);
          if (token.lang) code.dataset.lang = String(token.lang).split(/\s/)[0];
          nodes.push(element("pre", [code]));
          break;
        }
        case "blockquote":
          nodes.push(element("blockquote", block(token.tokens)));
          break;
        case "list": {
          const list = element(token.ordered ? "ol" : "ul", token.items.map((item) => element("li", block(item.tokens))));
          if (token.ordered && Number(token.start) > 1) list.start = Number(token.start);
          nodes.push(list);
          break;
        }
        case "table": {
          const head = element("thead", [element("tr", token.header.map((c) => cell(c, "th")))]);
          const body = element("tbody", token.rows.map((row) => element("tr", row.map((c) => cell(c, "td")))));
          nodes.push(element("div", [element("table", [head, body])]));
          nodes[nodes.length - 1].className = "table";
          break;
        }
        case "hr":
          nodes.push(element("hr"));
          break;
        case "checkbox": // a task list item's box
          nodes.push(token.checked ? "☑ " : "☐ ");
          break;
        case "text": // a tight list item's text
          nodes.push(...(token.tokens ? inline(token.tokens) : [decode(token.text)]));
          break;
        default: // html blocks and anything newer: shown as the text they are
          nodes.push(element("p", [token.raw ?? token.text ?? ""]));
      }
    }
    return nodes;
  }

  // The nodes of ``text`` as Markdown (GFM, line breaks kept).
  return { render: (text) => block(marked.lexer(text, { gfm: true, breaks: true })) };
})();

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
    ol > li { max-width: 90%; padding: .5rem .7rem; border-radius: .6rem; overflow-wrap: anywhere; }
    li.user { align-self: flex-end; background: #dfe7fb; white-space: pre-wrap; }
    li.agent { align-self: flex-start; background: #f4f5f7; }
    .markdown > :first-child { margin-top: 0; } .markdown > :last-child { margin-bottom: 0; }
    .markdown p, .markdown ul, .markdown ol, .markdown pre, .markdown blockquote, .markdown .table { margin: .4rem 0; }
    .markdown ul, .markdown ol { padding-left: 1.3rem; }
    .markdown pre { background: #fff; border: 1px solid #d8dbe0; border-radius: .4rem; padding: .4rem .5rem; overflow-x: auto; }
    .markdown code { font: .85em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
    .markdown blockquote { border-left: 3px solid #d8dbe0; padding-left: .6rem; color: #5f6368; }
    .markdown h1, .markdown h2, .markdown h3, .markdown h4, .markdown h5, .markdown h6 { font-size: 1rem; margin: .5rem 0 .3rem; }
    .markdown .table { overflow-x: auto; }
    .markdown table { border-collapse: collapse; font-size: .9em; }
    .markdown th, .markdown td { border: 1px solid #d8dbe0; padding: .2rem .45rem; }
    .markdown a { color: #2456c7; }
    .suggestions { list-style: none; margin: 0; padding: 0 .75rem .4rem; display: flex; flex-wrap: wrap; gap: .4rem; }
    .suggestions li { padding: 0; }
    .suggestions button { border-radius: 1.1rem; text-align: left; }
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
      <ul class="suggestions" aria-label="Suggested prompts" hidden></ul>
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
    suggestions: $(".suggestions"),
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

  function markdown(text) {
    const box = document.createElement("div");
    box.className = "markdown";
    box.append(...GenieMarkdown.render(text));
    return box;
  }

  function draw(view) {
    const { li, message } = view;
    li.replaceChildren();
    li.setAttribute("aria-busy", String(message.state === "streaming"));
    for (const part of message.parts) {
      if (part.kind === "text") {
        li.append(markdown(part.text));
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
    let pending = false;
    try {
      const result = await GenieClient.follow({
        url: url(streamUrl),
        headers: headers(),
        signal: controller.signal,
        onChunk(chunk) {
          if (chunk.type === "start") view = agentView(chunk.messageId);
          if (!view) return;
          GenieClient.applyChunk(view.message, chunk);
          // A delta is drawn at the next frame, with the others of that frame.
          if (chunk.type !== "text-delta") draw(view);
          else if (!pending) {
            pending = true;
            const drawn = view;
            requestAnimationFrame(() => {
              pending = false;
              draw(drawn);
            });
          }
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

  // The agent's greeting heads the conversation (shown, never sent to the model); its
  // suggested prompts are offered until the first message.
  async function greet() {
    if (!usable) return;
    let profile;
    try {
      profile = await call(`agent-profile${options.agent ? `?agent=${encodeURIComponent(options.agent)}` : ""}`);
    } catch (error) {
      return; // no greeting: the chat works all the same
    }
    if (profile.greeting) {
      const li = document.createElement("li");
      li.className = "agent greeting";
      li.append(markdown(profile.greeting));
      ui.messages.prepend(li);
    }
    if (!saved && profile.suggested_prompts.length && !ui.messages.querySelector("li.user")) {
      ui.suggestions.replaceChildren(
        ...profile.suggested_prompts.map((prompt) => {
          const li = document.createElement("li");
          li.append(
            button(prompt, () => {
              ui.text.value = prompt;
              ui.form.requestSubmit();
            }),
          );
          return li;
        }),
      );
      ui.suggestions.hidden = false;
    }
  }

  async function load() {
    loaded = true;
    await greet();
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
      ui.suggestions.hidden = true;
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
