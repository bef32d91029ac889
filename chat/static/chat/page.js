// The chat page: the REST API (session cookie + CSRF) is its only backend. Model text is
// rendered as Markdown by marked and sanitised by DOMPurify before it touches the DOM
// (code blocks then highlighted by highlight.js, which escapes what it reads); everything
// else goes in as text.
(() => {
  const API = document.querySelector('meta[name="genie-api"]').content;
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const ui = {
    sessions: $("sessions"),
    toggleSessions: $("toggle-sessions"),
    sessionList: $("session-list"),
    noSessions: $("no-sessions"),
    search: $("session-search"),
    moreSessions: $("more-sessions"),
    newChat: $("new-chat"),
    main: $("main"),
    title: $("chat-title"),
    agentPicker: $("agent-picker"),
    agent: $("agent"),
    messages: $("messages"),
    jump: $("jump"),
    status: $("status"),
    composer: $("composer"),
    text: $("message-text"),
    fileInput: $("file-input"),
    attachments: $("attachments"),
    send: $("send"),
    stop: $("stop"),
    context: $("context"),
    contextMeter: $("context-meter"),
    contextText: $("context-text"),
    compact: $("compact"),
    empty: $("empty-state"),
    emptyName: $("empty-name"),
    emptyDescription: $("empty-description"),
    emptyGreeting: $("empty-greeting"),
    suggestions: $("suggestions"),
    shortcuts: $("shortcuts"),
    showShortcuts: $("show-shortcuts"),
  };
  // Each agent's name, description, greeting and suggested prompts (the page's JSON).
  const profiles = JSON.parse($("agent-profiles").textContent);

  // Client tools this page runs itself, by tool name: async (input) => output. Other
  // client tools ask the user for a result. A page embedding more can add to it.
  const clientTools = (window.genieClientTools = window.genieClientTools || {});

  const state = {
    session: null, // the open session's detail
    stream: null, // AbortController of the stream being followed
    streaming: false, // a reply of this chat is being followed
    files: [], // uploads to attach to the next message: {file_id, filename}, or {file, filename} before a session exists
    views: new Map(), // agent message uuid → {message, el, parts: Map(part → element), stored}
    sessionsNext: null,
    opening: 0, // counts the chats opened: a slow answer for one opened before is dropped
    loading: false, // a chat's messages are being read: not empty yet
    follow: true, // the conversation keeps its end in view as it grows
    lastScrollTop: 0,
  };

  // --- the API ------------------------------------------------------------------------

  // A path under the API, or a URL the server sent: on this page's origin either way.
  const url = (path) => GenieClient.apiUrl(API, path);
  const call = (path, options = {}) =>
    GenieClient.request(url(path), { ...options, headers: { "X-CSRFToken": CSRF, ...(options.headers || {}) } });

  function announce(text, { error = false } = {}) {
    ui.status.textContent = text;
    ui.status.classList.toggle("error", error);
  }

  function explain(error) {
    announce(error.message || String(error), { error: true });
  }

  function button(label, onClick, className = "") {
    const el = document.createElement("button");
    el.type = "button";
    el.textContent = label;
    if (className) el.className = className;
    el.addEventListener("click", onClick);
    return el;
  }

  // --- times --------------------------------------------------------------------------

  function timeElement(iso) {
    const when = iso ? new Date(iso) : new Date();
    const el = document.createElement("time");
    el.dateTime = when.toISOString();
    const today = when.toDateString() === new Date().toDateString();
    el.textContent = today
      ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : when.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
    el.title = when.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
    return el;
  }

  // --- copying ------------------------------------------------------------------------

  // The clipboard API needs a secure context (https, or localhost); elsewhere (a Genie on a
  // LAN address over http) the older copy command still works from a click.
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    if (!copied) throw new Error("The browser refused to copy.");
  }

  function copyButton(label, text) {
    const el = button("Copy", async () => {
      try {
        await copyText(typeof text === "function" ? text() : text);
        el.textContent = "Copied";
        announce("Copied to the clipboard.");
        setTimeout(() => (el.textContent = "Copy"), 1500);
      } catch (error) {
        explain(error);
      }
    }, "copy small");
    el.setAttribute("aria-label", label);
    return el;
  }

  // --- sessions -----------------------------------------------------------------------

  // Material Design icons "edit" and "delete" (Apache-2.0), as the thumbs are.
  const svg = (path) =>
    `<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" focusable="false"><path fill="currentColor" d="${path}"/></svg>`;
  const ICONS = {
    rename: svg("M3 17.25V21h3.75L17.81 9.94l-3.75-3.75L3 17.25zM20.71 7.04a1 1 0 0 0 0-1.41l-2.34-2.34a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75 1.83-1.83z"),
    remove: svg("M6 19c0 1.1.9 2 2 2h8c1.1 0 2-.9 2-2V7H6v12zM19 4h-3.5l-1-1h-5l-1 1H5v2h14V4z"),
  };

  // A chat's name in lists: its title, else the start of its first message.
  const chatName = (session) => session.title || (session.preview || "").trim() || "New chat";

  async function loadSessions({ more = false } = {}) {
    const query = ui.search.value.trim();
    const first = `sessions?page_size=30${query ? `&search=${encodeURIComponent(query)}` : ""}`;
    const page = await call(more ? state.sessionsNext : first);
    if (!more && query !== ui.search.value.trim()) return; // a later search is on its way
    if (!more) ui.sessionList.replaceChildren();
    for (const session of page.results) ui.sessionList.append(sessionItem(session));
    state.sessionsNext = page.next;
    ui.moreSessions.hidden = !page.next;
    ui.noSessions.hidden = ui.sessionList.children.length > 0;
    ui.noSessions.textContent = query ? `No chat matches “${query}”.` : "No chats yet.";
    markCurrentSession();
  }

  let searchTimer = 0;
  function searchSessions() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadSessions().catch(explain), 250);
  }

  function sessionItem(session) {
    const item = document.createElement("li");
    item.dataset.uuid = session.uuid;
    const link = document.createElement("a");
    link.href = `?session=${session.uuid}`;
    link.dataset.uuid = session.uuid;
    const name = document.createElement("span");
    name.className = "session-title";
    name.textContent = chatName(session);
    link.title = chatName(session);
    link.append(name, timeElement(session.updated_at));
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openSession(session.uuid, { push: true }).catch(explain);
      closeSessionsOnNarrow();
    });
    const rename = button("", () => renameForm(item, session), "icon");
    rename.innerHTML = ICONS.rename; // constants of ours, not model text
    rename.setAttribute("aria-label", `Rename ${chatName(session)}`);
    rename.title = "Rename";
    const remove = button("", () => deleteForm(item, session), "icon");
    remove.innerHTML = ICONS.remove;
    remove.setAttribute("aria-label", `Delete ${chatName(session)}`);
    remove.title = "Delete";
    const tools = document.createElement("span");
    tools.className = "session-tools";
    tools.append(rename, remove);
    item.append(link, tools);
    return item;
  }

  function renameForm(item, session) {
    const form = document.createElement("form");
    form.className = "rename";
    const id = `rename-${session.uuid}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.className = "visually-hidden";
    label.textContent = "New title";
    const input = document.createElement("input");
    input.type = "text";
    input.id = id;
    input.maxLength = 200;
    input.value = session.title || (session.preview || "").trim();
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    save.className = "small primary";
    const restore = () => {
      item.replaceWith(sessionItem(session));
      markCurrentSession();
    };
    form.append(label, input, save, button("Cancel", restore, "small"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const saved = await call(`sessions/${session.uuid}`, { method: "PATCH", json: { title: input.value } });
        Object.assign(session, saved);
        if (state.session && state.session.uuid === session.uuid) {
          state.session.title = saved.title;
          ui.title.textContent = chatName(saved);
        }
        restore();
        announce("The chat was renamed.");
      } catch (error) {
        explain(error);
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        restore();
      }
    });
    item.replaceChildren(form);
    input.focus();
    input.select();
  }

  function deleteForm(item, session) {
    const box = document.createElement("div");
    box.className = "confirm";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", `Delete ${chatName(session)}?`);
    const question = document.createElement("span");
    question.textContent = `Delete “${chatName(session)}”?`;
    const restore = () => {
      item.replaceWith(sessionItem(session));
      markCurrentSession();
    };
    const confirm = button("Delete", async () => {
      try {
        await call(`sessions/${session.uuid}`, { method: "DELETE" });
        item.remove();
        ui.noSessions.hidden = ui.sessionList.children.length > 0;
        if (state.session && state.session.uuid === session.uuid) startNewChat({ push: true });
        announce("The chat was deleted.");
      } catch (error) {
        explain(error);
      }
    }, "small danger");
    box.append(question, confirm, button("Cancel", restore, "small"));
    item.replaceChildren(box);
    confirm.focus();
  }

  function markCurrentSession() {
    for (const link of ui.sessionList.querySelectorAll("a")) {
      if (state.session && link.dataset.uuid === state.session.uuid) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  function closeSessionsOnNarrow() {
    if (ui.toggleSessions.offsetParent === null) return; // wide screen: the list stays
    ui.sessions.classList.remove("open");
    ui.toggleSessions.setAttribute("aria-expanded", "false");
  }

  function resetConversation() {
    stopFollowing();
    state.session = null;
    state.views.clear();
    state.files = [];
    state.follow = true;
    ui.messages.replaceChildren();
    ui.jump.hidden = true;
    renderAttachments();
  }

  function startNewChat({ push = false } = {}) {
    state.opening += 1;
    state.loading = false;
    resetConversation();
    ui.title.textContent = "New chat";
    ui.agentPicker.hidden = false;
    ui.context.hidden = true;
    renderEmptyState();
    setStreaming(false);
    if (push) history.pushState({}, "", location.pathname);
    markCurrentSession();
    ui.text.focus();
  }

  // Another chat opened (or a new one started) while this one loaded: its answers are dropped.
  async function openSession(uuid, { push = false } = {}) {
    const opening = ++state.opening;
    const current = () => state.opening === opening;
    resetConversation();
    state.loading = true;
    renderEmptyState();
    announce("Loading the chat…");
    let session;
    try {
      session = await call(`sessions/${uuid}`);
    } catch (error) {
      if (!current()) return;
      if (error.status === 404) {
        announce("That chat does not exist or is not yours.", { error: true });
        startNewChat({ push: true });
        return;
      }
      throw error;
    }
    if (!current()) return;
    state.session = session;
    if (push) history.pushState({}, "", `?session=${uuid}`);
    showSession();
    for (let page = `sessions/${uuid}/messages?page_size=100`; page; ) {
      const batch = await call(page);
      if (!current()) return;
      for (const stored of batch.results) renderStored(stored);
      page = batch.next;
    }
    state.loading = false;
    renderEmptyState();
    markLastReply();
    // A chat opened shows its end, as chat apps do.
    scrollToEnd({ force: true });
    announce("");
    refreshContext();
    // A reply still running (or paused for an action) is replayed from its start and
    // followed; an idle session answers 204.
    const outcome = await follow(session.stream_url);
    // A run that ended between reading the messages and opening the stream left its reply
    // drawn as it was then (still streaming, maybe empty): read such replies again, once.
    if (outcome === "idle" && current()) await rereadUnfinished(session);
  }

  async function rereadUnfinished(session) {
    for (const view of [...state.views.values()]) {
      if (view.message.state !== "streaming") continue;
      const stored = await call(`sessions/${session.uuid}/messages/${view.message.id}`);
      if (state.session !== session) return;
      renderStored(stored);
    }
    markLastReply();
  }

  function showSession() {
    ui.title.textContent = chatName(state.session);
    ui.agentPicker.hidden = true;
    markCurrentSession();
  }

  // --- the empty chat -----------------------------------------------------------------

  function profileOf(handle) {
    return profiles.find((profile) => profile.handle === handle) || profiles.find((p) => p.is_default) || null;
  }

  // A chat with no message yet shows its agent: name, description, greeting, and its
  // suggested prompts as buttons that send the prompt.
  function renderEmptyState() {
    const profile = profileOf(state.session ? state.session.agent : ui.agent.value);
    const empty = !ui.messages.querySelector(".message") && !state.loading;
    ui.empty.hidden = !empty || !profile;
    if (ui.empty.hidden || ui.empty.dataset.handle === profile.handle) return;
    ui.empty.dataset.handle = profile.handle;
    ui.emptyName.textContent = profile.name;
    ui.emptyDescription.textContent = profile.description;
    ui.emptyDescription.hidden = !profile.description;
    renderMarkdown(ui.emptyGreeting, profile.greeting);
    ui.emptyGreeting.hidden = !profile.greeting;
    ui.suggestions.replaceChildren(
      ...profile.suggested_prompts.map((prompt) => {
        const item = document.createElement("li");
        item.append(
          button(prompt, () => {
            ui.text.value = prompt;
            ui.composer.requestSubmit();
          }, "chip"),
        );
        return item;
      }),
    );
  }

  // --- Markdown -----------------------------------------------------------------------

  // Model text may carry HTML a prompt injection wrote: only what Markdown makes is kept (no
  // images, which would load an attacker's URL; no forms, styles or attributes but links'
  // http(s)/mailto href, lists' and tables' layout, and a code block's language class).
  // Links open apart (a hook below).
  const MARKDOWN_HTML = {
    ALLOWED_TAGS: [
      "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
      "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
    ],
    ALLOWED_ATTR: ["href", "start", "align", "class"],
    ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
  };
  const LANGUAGE_CLASS = /^language-([A-Za-z0-9_+#.-]{1,40})$/;

  function renderMarkdown(element, text) {
    element.innerHTML = DOMPurify.sanitize(marked.parse(text, { gfm: true, breaks: true }), MARKDOWN_HTML);
    for (const code of element.querySelectorAll("pre > code")) decorateCode(code);
    for (const table of element.querySelectorAll("table")) {
      const scroller = document.createElement("div");
      scroller.className = "table";
      table.replaceWith(scroller);
      scroller.append(table);
    }
  }

  // A code block: its language above it, a copy button, and highlighting when highlight.js
  // knows the language (it reads the text and writes escaped spans).
  function decorateCode(code) {
    const match = LANGUAGE_CLASS.exec(code.className);
    const language = match ? match[1] : "";
    const source = code.textContent;
    if (language && window.hljs && hljs.getLanguage(language)) {
      code.innerHTML = hljs.highlight(source, { language, ignoreIllegals: true }).value;
      code.classList.add("hljs");
    }
    const pre = code.parentElement;
    const block = document.createElement("div");
    block.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.className = "code-language";
    label.textContent = language || "text";
    head.append(label, copyButton(`Copy the ${language || "text"} code`, source));
    pre.replaceWith(block);
    block.append(head, pre);
  }

  // --- messages -----------------------------------------------------------------------

  function bubble(role, { uuid = "", createdAt = null, before = null } = {}) {
    const item = document.createElement("li");
    item.className = `message ${role}`;
    if (uuid) item.dataset.uuid = uuid;
    const who = document.createElement("p");
    who.className = "who";
    const name = document.createElement("span");
    name.textContent = role === "user" ? "You" : "Agent";
    who.append(name, " · ", timeElement(createdAt));
    const body = document.createElement("div");
    body.className = "body";
    const foot = document.createElement("div");
    foot.className = "foot";
    item.append(who, body, foot);
    ui.messages.insertBefore(item, before);
    ui.empty.hidden = true;
    return item;
  }

  function renderUser(text, attachments = [], { uuid = "", createdAt = null } = {}) {
    const item = bubble("user", { uuid, createdAt });
    item.dataset.text = text;
    const body = item.querySelector(".body");
    const paragraph = document.createElement("p");
    paragraph.className = "plain";
    paragraph.textContent = text;
    body.append(paragraph);
    if (attachments.length) {
      const list = document.createElement("ul");
      list.className = "files";
      for (const file of attachments) {
        const entry = document.createElement("li");
        const link = document.createElement("a");
        link.href = file.url || "#";
        link.textContent = file.filename;
        link.target = "_blank";
        link.rel = "noopener";
        entry.append(link);
        list.append(entry);
      }
      body.append(list);
    }
    userFoot(item);
    scrollToEnd();
    return item;
  }

  // A user message's tools: copy it, and edit it (a new turn from there) once it is stored.
  function userFoot(item) {
    const foot = item.querySelector(".foot");
    const tools = document.createElement("div");
    tools.className = "message-tools";
    tools.append(copyButton("Copy your message", () => item.dataset.text));
    if (item.dataset.uuid) {
      const edit = button("Edit", () => editForm(item), "small");
      edit.setAttribute("aria-label", "Edit your message");
      tools.append(edit);
    }
    foot.replaceChildren(tools);
  }

  // Editing a sent message starts a new turn from it (POST …/edit): the replies after it
  // are replaced, kept in the stored transcript (``replaced_by``) and no longer shown.
  function editForm(item) {
    const body = item.querySelector(".body");
    const form = document.createElement("form");
    form.className = "edit";
    const id = `edit-${item.dataset.uuid}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.className = "visually-hidden";
    label.textContent = "The new text of your message";
    const input = document.createElement("textarea");
    input.id = id;
    input.rows = Math.min(8, Math.max(2, item.dataset.text.split("\n").length));
    input.value = item.dataset.text;
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "small primary";
    save.textContent = "Send";
    const shown = [...body.childNodes];
    const cancel = () => {
      body.replaceChildren(...shown);
      item.querySelector(".foot").hidden = false;
    };
    form.append(label, input, save, button("Cancel", cancel, "small"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!input.value.trim()) {
        announce("Write a message first.", { error: true });
        return;
      }
      save.disabled = true;
      try {
        const started = await call(`sessions/${state.session.uuid}/messages/${item.dataset.uuid}/edit`, {
          method: "POST",
          headers: { "Idempotency-Key": crypto.randomUUID() },
          json: { text: input.value },
        });
        const files = [...item.querySelectorAll(".files a")].map((a) => ({ filename: a.textContent, url: a.href }));
        dropFrom(item);
        renderUser(input.value, files, { uuid: started.user_message_uuid });
        state.follow = true;
        await follow(`${started.run_url}/stream`, { started: true });
      } catch (error) {
        save.disabled = false;
        if (error.code === "run_active") announce("Wait for the reply to finish, or stop it, first.", { error: true });
        else explain(error);
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        cancel();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    item.querySelector(".foot").hidden = true;
    body.replaceChildren(form);
    input.focus();
  }

  // Remove ``item`` and everything after it from the conversation shown.
  function dropFrom(item) {
    while (item) {
      const next = item.nextElementSibling;
      if (item.dataset.uuid) state.views.delete(item.dataset.uuid);
      item.remove();
      item = next;
    }
  }

  function renderStored(stored) {
    // A message an edit or a regeneration replaced stays in the stored transcript; the
    // conversation shows what replaced it.
    if (stored.replaced_by) return;
    if (stored.sender_role === "user") {
      renderUser(stored.text, stored.attachments, { uuid: stored.uuid, createdAt: stored.created_at });
      return;
    }
    const view = agentView(stored.uuid, stored.created_at);
    view.message = GenieClient.fromTranscript(stored);
    view.stored = stored;
    drawMessage(view);
  }

  function agentView(uuid, createdAt = null) {
    let view = state.views.get(uuid);
    if (!view) {
      const el = bubble("agent", { uuid, createdAt });
      view = { message: GenieClient.newMessage(uuid), el, parts: new Map(), stored: null };
      state.views.set(uuid, view);
    }
    return view;
  }

  function drawMessage(view) {
    const body = view.el.querySelector(".body");
    const wanted = view.message.parts.map((part) => drawPart(view, part));
    // Parts are only ever appended, or all dropped by a replayed ``start``.
    if (wanted.length !== body.children.length || wanted.some((el, i) => body.children[i] !== el)) {
      body.replaceChildren(...wanted);
    }
    drawFoot(view);
  }

  function drawPart(view, part) {
    let el = view.parts.get(part);
    if (part.kind === "text") {
      if (!el) {
        el = document.createElement("div");
        el.className = "markdown";
        view.parts.set(part, el);
      }
      if (el.dataset.length !== String(part.text.length)) {
        renderMarkdown(el, part.text);
        el.dataset.length = String(part.text.length);
      }
      return el;
    }
    const signature = JSON.stringify([part.state, part.approval, part.clientCall, part.connection, part.input]);
    if (el && el.dataset.signature === signature) return el;
    const fresh = toolElement(view, part);
    fresh.dataset.signature = signature;
    if (el) el.replaceWith(fresh);
    view.parts.set(part, fresh);
    return fresh;
  }

  function toolElement(view, part) {
    const box = document.createElement("section");
    box.className = `tool ${part.state}`;
    box.dataset.callId = part.callId;
    box.setAttribute("aria-label", `Tool ${part.name}`);
    const head = document.createElement("p");
    head.className = "tool-head";
    const name = document.createElement("code");
    name.textContent = part.name;
    const status = document.createElement("span");
    status.className = "tool-state";
    status.textContent = GenieClient.TOOL_STATES[part.state] || part.state;
    head.append("Tool ", name, " · ", status);
    box.append(head);
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "Details";
    const pre = document.createElement("pre");
    const shown = { input: part.input };
    if (part.output !== undefined && part.output !== null) shown.output = part.output;
    if (part.errorText) shown.error = part.errorText;
    pre.textContent = JSON.stringify(shown, null, 2);
    details.append(summary, pre);
    box.append(details);
    if (part.approval) box.append(approvalForm(part));
    if (part.clientCall) box.append(clientToolForm(view, part));
    if (part.connection) box.append(connectionForm(part));
    return box;
  }

  function approvalForm(part) {
    const form = document.createElement("div");
    form.className = "actions";
    form.setAttribute("role", "group");
    form.setAttribute("aria-label", `Approve ${part.name}?`);
    const decide = (approved) => async () => {
      for (const el of form.querySelectorAll("button")) el.disabled = true;
      try {
        await call(part.approval.url, { method: "POST", json: { approved } });
        announce(approved ? `Approved ${part.name}.` : `Denied ${part.name}.`);
      } catch (error) {
        explain(error);
        for (const el of form.querySelectorAll("button")) el.disabled = false;
      }
    };
    const question = document.createElement("span");
    question.textContent = `Allow ${part.name} to run?`;
    form.append(question, button("Approve", decide(true), "primary"), button("Deny", decide(false)));
    announce(`The agent asks to run ${part.name}: approve or deny it.`);
    return form;
  }

  async function sendToolResult(part, body) {
    try {
      await call(part.clientCall.url, { method: "POST", json: body });
    } catch (error) {
      if (error.status !== 409) explain(error); // 409: already answered (a replay)
    }
  }

  function clientToolForm(view, part) {
    const form = document.createElement("form");
    form.className = "actions";
    const handler = clientTools[part.name];
    if (handler) {
      form.textContent = `Running ${part.name} in this page…`;
      runClientTool(view, part, handler);
      return form;
    }
    const id = `result-${part.callId}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `The agent asks this page to run ${part.name}. Its result (JSON):`;
    const input = document.createElement("textarea");
    input.id = id;
    input.rows = 2;
    input.value = "{}";
    const submit = document.createElement("button");
    submit.type = "submit";
    submit.className = "primary";
    submit.textContent = "Send result";
    form.append(label, input, submit, button("Decline", () => sendToolResult(part, { error: "The user declined." })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      let output;
      try {
        output = JSON.parse(input.value);
      } catch (_) {
        announce("The result must be JSON, such as {} or {\"ok\": true}.", { error: true });
        input.focus();
        return;
      }
      sendToolResult(part, { output });
    });
    announce(`The agent asks this page to run ${part.name}.`);
    return form;
  }

  // A replay (a reload) shows calls that were answered long ago: run a handler only for a
  // call the session still waits on, so it never runs twice.
  async function runClientTool(view, part, handler) {
    for (let attempt = 0; attempt < 5; attempt += 1) {
      if (!part.clientCall) return; // answered in the stream meanwhile
      const detail = await call(`sessions/${state.session.uuid}`);
      if (detail.pending_actions.some((action) => action.call_id === part.callId)) {
        try {
          await sendToolResult(part, { output: await handler(part.input) });
        } catch (error) {
          await sendToolResult(part, { error: String((error && error.message) || error) });
        }
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  function connectionForm(part) {
    const form = document.createElement("div");
    form.className = "actions";
    const link = document.createElement("a");
    link.href = part.connection.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.className = "button primary";
    link.textContent = `Connect ${part.connection.provider}`;
    form.append(
      link,
      button("Not now", async () => {
        try {
          await call(part.connection.rejectUrl, { method: "POST" });
        } catch (error) {
          explain(error);
        }
      }),
    );
    return form;
  }

  const replyText = (view) => view.message.parts.map((part) => part.text || "").join("\n\n").trim();

  function drawFoot(view) {
    const foot = view.el.querySelector(".foot");
    const { message } = view;
    const last = view.el.classList.contains("last-reply");
    const key = `${message.state}|${message.cut}|${message.errorText}|${view.stored ? view.stored.feedback_url : ""}|${last}|${state.streaming}`;
    if (foot.dataset.key === key) return;
    foot.dataset.key = key;
    foot.replaceChildren();
    view.el.setAttribute("aria-busy", String(message.state === "streaming"));
    if (message.state === "stopped") foot.append(note("Stopped."));
    if (message.state === "error") foot.append(note(message.errorText, "error"));
    if (message.state === "stopped" || message.state === "error") foot.append(retryButton(view));
    if (message.cut) foot.append(note(GenieClient.CUT_NOTE));
    if (message.state === "streaming") return;
    const tools = document.createElement("div");
    tools.className = "message-tools";
    tools.append(copyButton("Copy the reply", () => replyText(view)));
    if (last && view.stored && !state.streaming) {
      const again = button("Regenerate", () => regenerate(view), "small");
      again.setAttribute("aria-label", "Regenerate the reply");
      tools.append(again);
    }
    foot.append(tools);
    // A failed reply has nothing to rate: its error and "Retry" say what there is to do.
    if (message.state !== "error" && view.stored && view.stored.feedback_url) foot.append(ratingForm(view.stored));
  }

  // Only the chat's last reply can be answered again.
  function markLastReply() {
    const replies = ui.messages.querySelectorAll(".message.agent");
    replies.forEach((el, index) => el.classList.toggle("last-reply", index === replies.length - 1));
    for (const view of state.views.values()) drawFoot(view);
  }

  async function regenerate(view) {
    try {
      const started = await call(`sessions/${state.session.uuid}/messages/${view.message.id}/regenerate`, {
        method: "POST",
        headers: { "Idempotency-Key": crypto.randomUUID() },
      });
      dropFrom(view.el);
      state.follow = true;
      announce("");
      await follow(`${started.run_url}/stream`, { started: true });
    } catch (error) {
      if (error.code === "run_active") announce("Wait for the reply to finish, or stop it, first.", { error: true });
      else explain(error);
    }
  }

  // "Retry": the message this reply answered, sent again as a new turn (the failed reply
  // stays in the history, as it happened).
  function retryButton(view) {
    let asked = view.el.previousElementSibling;
    while (asked && !asked.classList.contains("user")) asked = asked.previousElementSibling;
    const retry = button("Retry", () => {
      ui.text.value = asked.querySelector(".plain").textContent;
      ui.composer.requestSubmit();
    }, "retry");
    retry.hidden = !asked;
    return retry;
  }

  function note(text, className = "") {
    const el = document.createElement("p");
    el.className = `note ${className}`;
    el.textContent = text;
    return el;
  }

  function ratingForm(stored) {
    const form = document.createElement("form");
    form.className = "rating";
    const group = document.createElement("div");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Rate this reply");
    const comment = document.createElement("div");
    comment.className = "rating-comment";
    const id = `comment-${stored.uuid}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = "Comment (optional)";
    const text = document.createElement("textarea");
    text.id = id;
    text.rows = 2;
    text.value = stored.feedback ? stored.feedback.body : "";
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Send feedback";
    const saved = document.createElement("span");
    saved.className = "saved";
    saved.setAttribute("role", "status");
    comment.append(label, text, save);
    comment.hidden = !stored.feedback;
    let rating = stored.feedback ? stored.feedback.rating : null;
    const thumbs = [
      ["positive", "Good reply"],
      ["negative", "Bad reply"],
    ].map(([value, name]) => {
      const thumb = button("", () => {
        rating = value;
        rate();
        comment.hidden = false;
        text.focus();
      });
      thumb.innerHTML = GenieClient.THUMB_SVG; // a constant of ours, not model text
      thumb.className = `thumb ${value}`;
      thumb.dataset.rating = value;
      thumb.setAttribute("aria-label", name);
      thumb.setAttribute("aria-pressed", String(rating === value));
      return thumb;
    });
    async function rate() {
      for (const thumb of thumbs) thumb.setAttribute("aria-pressed", String(thumb.dataset.rating === rating));
      try {
        stored.feedback = await call(stored.feedback_url, { method: "POST", json: { rating, body: text.value } });
        saved.textContent = "Thanks, feedback saved.";
      } catch (error) {
        explain(error);
      }
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!rating) {
        announce("Choose thumbs up or down first.", { error: true });
        return;
      }
      rate();
    });
    group.append(...thumbs);
    form.append(group, comment, saved);
    return form;
  }

  // --- scrolling ----------------------------------------------------------------------

  // The conversation follows its end while ``state.follow``: a message the user sends, and
  // the reply it starts, stay in view. Scrolling up stops that and offers "Jump to latest";
  // scrolling back to the end (or the button) starts it again.
  const atEnd = () => ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40;

  function scrollToEnd({ force = false } = {}) {
    if (force) state.follow = true;
    if (state.follow) {
      ui.messages.scrollTop = ui.messages.scrollHeight;
      state.lastScrollTop = ui.messages.scrollTop;
    }
    ui.jump.hidden = atEnd();
  }

  function onScroll() {
    const top = ui.messages.scrollTop;
    if (atEnd()) state.follow = true;
    else if (top < state.lastScrollTop - 2) state.follow = false; // the user scrolled up
    state.lastScrollTop = top;
    ui.jump.hidden = atEnd();
  }

  // --- streams ------------------------------------------------------------------------

  function stopFollowing() {
    if (state.stream) state.stream.abort();
    state.stream = null;
    setStreaming(false);
  }

  function setStreaming(on) {
    const changed = state.streaming !== on;
    state.streaming = on;
    ui.send.disabled = on;
    ui.stop.hidden = !on;
    ui.compact.disabled = on;
    ui.messages.setAttribute("aria-busy", String(on));
    if (changed) markLastReply();
  }

  // Follow ``streamUrl`` to the finish of its run, drawing each chunk into the agent
  // message its ``start`` names (a replay from the start rebuilds that message).
  // Resolves the stream's outcome ("finished" or "idle"), or null when it failed or was left.
  async function follow(streamUrl, { started = false } = {}) {
    stopFollowing();
    const controller = new AbortController();
    state.stream = controller;
    const session = state.session;
    let view = null;
    let pending = false;
    const draw = () => {
      pending = false;
      if (view) drawMessage(view);
      scrollToEnd();
    };
    // A turn this page started is busy at once; a session opened is busy only when its
    // stream has a reply to follow (an idle one answers 204).
    setStreaming(started);
    try {
      const result = await GenieClient.follow({
        url: url(streamUrl),
        signal: controller.signal,
        onChunk(chunk) {
          if (!started) {
            started = true;
            setStreaming(true);
          }
          if (chunk.type === "start") {
            view = agentView(chunk.messageId);
            markLastReply();
          }
          if (!view) return;
          GenieClient.applyChunk(view.message, chunk);
          if (chunk.type === "start" || chunk.type === "finish" || chunk.type.startsWith("data-")) draw();
          else if (!pending) {
            pending = true;
            requestAnimationFrame(draw);
          }
        },
      });
      if (state.session !== session) return null;
      if (result.outcome === "finished" && view) await finished(view);
      return result.outcome;
    } catch (error) {
      if (!controller.signal.aborted) explain(error);
      return null;
    } finally {
      if (state.stream === controller) {
        state.stream = null;
        if (started) setStreaming(false);
      }
    }
  }

  async function finished(view) {
    const session = state.session;
    try {
      view.stored = await call(`sessions/${session.uuid}/messages/${view.message.id}`);
    } catch (error) {
      explain(error);
    }
    if (state.session !== session) return;
    drawMessage(view);
    scrollToEnd();
    announce(view.message.state === "done" ? "The reply is complete." : "");
    refreshContext();
    loadSessions().catch(explain);
    // A blank title is written after the first reply: show it when it lands.
    if (!state.session.title) setTimeout(refreshTitle, 3000);
  }

  async function refreshTitle() {
    if (!state.session) return;
    const session = await call(`sessions/${state.session.uuid}`);
    if (state.session && session.uuid === state.session.uuid && session.title) {
      state.session.title = session.title;
      ui.title.textContent = session.title;
      loadSessions().catch(explain);
    }
  }

  // --- sending ------------------------------------------------------------------------

  async function send(event) {
    event.preventDefault();
    const text = ui.text.value;
    if (!text.trim()) {
      announce("Write a message first.", { error: true });
      ui.text.focus();
      return;
    }
    ui.send.disabled = true;
    // The same key on a retried request (a double click, a flaky network) creates nothing twice.
    const headers = { "Idempotency-Key": crypto.randomUUID() };
    try {
      let started;
      if (!state.session && state.files.length) {
        // Files chosen before the first message: an empty session to upload them to, then
        // its first message with them.
        await openEmptySession();
        await uploadPending();
      }
      const files = state.files;
      if (state.session) {
        started = await call(`sessions/${state.session.uuid}/messages`, {
          method: "POST",
          headers,
          json: { text, file_ids: files.map((file) => file.file_id) },
        });
      } else {
        const agent = ui.agent.value;
        started = await call("sessions", { method: "POST", headers, json: agent ? { text, agent } : { text } });
        state.opening += 1; // a chat still loading is no longer wanted
        state.session = await call(`sessions/${started.uuid}`);
        history.pushState({}, "", `?session=${started.uuid}`);
        showSession();
        loadSessions().catch(explain);
      }
      ui.text.value = "";
      state.files = [];
      renderAttachments();
      const mine = renderUser(text, files);
      scrollToEnd({ force: true });
      announce("");
      identify(mine, started.run_url);
      await follow(`${started.run_url}/stream`, { started: true });
    } catch (error) {
      ui.send.disabled = false;
      if (error.code === "run_active") announce("The agent is still answering; wait or stop it first.", { error: true });
      else explain(error);
    }
  }

  // A message just sent is shown before its uuid is known (the turn's answer names the
  // reply): its run names it, and then it can be edited.
  async function identify(item, runUrl) {
    try {
      const run = await call(runUrl);
      if (!item.isConnected) return;
      item.dataset.uuid = run.user_message_uuid;
      userFoot(item);
    } catch (error) {
      explain(error);
    }
  }

  async function openEmptySession() {
    const agent = ui.agent.value;
    const created = await call("sessions", {
      method: "POST",
      headers: { "Idempotency-Key": crypto.randomUUID() },
      json: agent ? { empty: true, agent } : { empty: true },
    });
    state.opening += 1;
    state.session = await call(`sessions/${created.uuid}`);
    history.pushState({}, "", `?session=${created.uuid}`);
    showSession();
  }

  async function stopReply() {
    if (!state.session || !state.streaming) return;
    try {
      await call(`sessions/${state.session.uuid}/stream/stop`, { method: "POST" });
      announce("Stopping…");
    } catch (error) {
      explain(error);
    }
  }

  // --- uploads ------------------------------------------------------------------------

  // In a chat, files are uploaded as soon as they are chosen; before its first message they
  // wait in the page and go up with it (an upload belongs to a session).
  async function upload() {
    const chosen = [...ui.fileInput.files];
    ui.fileInput.value = "";
    if (!state.session) {
      state.files.push(...chosen.map((file) => ({ file, filename: file.name })));
      renderAttachments();
      announce(`${chosen.map((file) => file.name).join(", ")} will be sent with your first message.`);
      return;
    }
    for (const file of chosen) await uploadOne(file);
    renderAttachments();
  }

  async function uploadOne(file) {
    const form = new FormData();
    form.append("file", file);
    announce(`Uploading ${file.name}…`);
    try {
      const stored = await call(`sessions/${state.session.uuid}/uploads`, { method: "POST", body: form });
      state.files.push(stored);
      announce(`${file.name} is attached to your next message.`);
      return stored;
    } catch (error) {
      explain(error);
      throw error;
    }
  }

  async function uploadPending() {
    const waiting = state.files;
    state.files = [];
    for (const entry of waiting) {
      if (entry.file_id) state.files.push(entry);
      else await uploadOne(entry.file);
    }
    renderAttachments();
  }

  function renderAttachments() {
    ui.attachments.replaceChildren(
      ...state.files.map((file) => {
        const item = document.createElement("li");
        item.append(file.filename + " ");
        const remove = button("×", () => {
          state.files = state.files.filter((other) => other !== file);
          renderAttachments();
          ui.text.focus();
        });
        remove.setAttribute("aria-label", `Remove ${file.filename}`);
        item.append(remove);
        return item;
      }),
    );
  }

  // --- context ------------------------------------------------------------------------

  async function refreshContext() {
    const session = state.session;
    if (!session) return;
    try {
      const usage = await call(`sessions/${session.uuid}/context-usage`);
      if (state.session !== session) return;
      ui.context.hidden = false;
      ui.contextMeter.value = Math.min(usage.percent, 100);
      ui.contextMeter.textContent = `${usage.percent}%`;
      ui.contextText.textContent = `${Math.round(usage.percent)}% · ${usage.used_tokens.toLocaleString()} of ${usage.context_window.toLocaleString()} tokens`;
    } catch (error) {
      explain(error);
    }
  }

  async function compact() {
    if (!state.session) return;
    ui.compact.disabled = true;
    announce("Summarising the earlier messages…");
    const summary = GenieClient.newMessage("compaction");
    try {
      await GenieClient.follow({
        url: url(`sessions/${state.session.uuid}/compact`),
        method: "POST",
        headers: { "X-CSRFToken": CSRF, "Idempotency-Key": crypto.randomUUID() },
        json: {},
        resumable: false,
        onChunk: (chunk) => GenieClient.applyChunk(summary, chunk),
      });
      if (summary.state === "error") throw new Error(summary.errorText);
      const done = summary.compaction || {};
      if (!done.messages_compacted) {
        announce("Nothing to compact yet: every message still fits among the last ones kept.");
        return;
      }
      const item = document.createElement("li");
      item.className = "compaction";
      const details = document.createElement("details");
      const head = document.createElement("summary");
      head.textContent = `Earlier messages summarised (${done.messages_compacted ?? 0} messages, ${done.before_tokens ?? "?"} → ${done.after_tokens ?? "?"} tokens)`;
      const body = document.createElement("div");
      body.className = "markdown";
      renderMarkdown(body, summary.parts.map((part) => part.text || "").join(""));
      details.append(head, body);
      item.append(details);
      ui.messages.append(item);
      scrollToEnd();
      announce("The chat was compacted.");
    } catch (error) {
      if (error.code === "run_active") announce("Compact once the reply has finished.", { error: true });
      else explain(error);
    } finally {
      ui.compact.disabled = false;
      refreshContext();
    }
  }

  // --- keyboard -----------------------------------------------------------------------

  const typing = (target) => target.closest && target.closest("input, textarea, select, [contenteditable]");

  // Shortcuts (listed in the "Shortcuts" dialog): Ctrl+Shift+O a new chat; "/" or
  // Shift+Esc the message box; Esc stops the reply; "?" the list.
  function onKey(event) {
    if (event.defaultPrevented || event.isComposing) return;
    const key = event.key;
    if ((event.ctrlKey || event.metaKey) && event.shiftKey && key.toLowerCase() === "o") {
      event.preventDefault();
      startNewChat({ push: true });
    } else if (key === "Escape" && event.shiftKey) {
      event.preventDefault();
      ui.text.focus();
    } else if (key === "Escape" && state.streaming && !ui.shortcuts.open) {
      event.preventDefault();
      stopReply();
    } else if (!typing(event.target) && !event.ctrlKey && !event.metaKey && !event.altKey) {
      if (key === "/") {
        event.preventDefault();
        ui.text.focus();
      } else if (key === "?") {
        event.preventDefault();
        ui.shortcuts.showModal();
      }
    }
  }

  // --- wiring -------------------------------------------------------------------------

  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
  // ``class`` only as a code block's language (marked's ``language-…``): any other class
  // from model text could dress it as the page's own controls.
  DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
    if (data.attrName === "class" && !(node.nodeName === "CODE" && LANGUAGE_CLASS.test(data.attrValue))) {
      data.keepAttr = false;
    }
  });

  ui.composer.addEventListener("submit", send);
  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!ui.send.disabled) ui.composer.requestSubmit();
    }
  });
  ui.stop.addEventListener("click", stopReply);
  ui.compact.addEventListener("click", compact);
  ui.fileInput.addEventListener("change", upload);
  ui.agent.addEventListener("change", renderEmptyState);
  ui.search.addEventListener("input", searchSessions);
  ui.newChat.addEventListener("click", () => {
    startNewChat({ push: true });
    closeSessionsOnNarrow();
  });
  ui.moreSessions.addEventListener("click", () => loadSessions({ more: true }).catch(explain));
  ui.toggleSessions.addEventListener("click", () => {
    const open = ui.sessions.classList.toggle("open");
    ui.toggleSessions.setAttribute("aria-expanded", String(open));
    if (open) ui.newChat.focus();
  });
  ui.messages.addEventListener("scroll", onScroll, { passive: true });
  ui.jump.addEventListener("click", () => {
    scrollToEnd({ force: true });
    ui.text.focus();
  });
  ui.showShortcuts.addEventListener("click", () => ui.shortcuts.showModal());
  document.addEventListener("keydown", onKey);

  function route() {
    const uuid = new URLSearchParams(location.search).get("session");
    if (uuid) openSession(uuid).catch(explain);
    else startNewChat();
  }
  window.addEventListener("popstate", route);
  loadSessions().catch(explain);
  route();
})();
