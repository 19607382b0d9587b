// The page's DOM: the task list and the conversation's entries, updated in place (so
// that text grows where it is, focus stays where it was, and open blocks stay open).
// Text from the server only ever goes in through textContent.

import {
  TERMINAL,
  elapsedMs,
  formatDuration,
  isRunning,
  childLink,
  outcome,
  request,
  shownState,
  turns,
} from "./tasks.js";

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** When a task started: the time of day, with the date when it was not today. */
function startTime(at, now) {
  const when = new Date(at);
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (when.toDateString() === new Date(now).toDateString()) return time;
  return `${when.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

export function title(model) {
  return request(model) || `task ${shortId(model.id)}`;
}

function setBadge(badge, model) {
  const state = shownState(model);
  setText(badge, state);
  badge.className = `badge state-${model.canceling ? "canceling" : model.state}`;
}

/** Puts `wanted` (nodes, in order) as the children of `parent`, moving only what is out
 *  of place: a moved node loses focus. */
function arrange(parent, wanted) {
  const keep = new Set(wanted);
  for (const child of [...parent.children]) if (!keep.has(child)) child.remove();
  wanted.forEach((node, i) => {
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
}

function partText(part) {
  if (part.text !== undefined) return part.text;
  if (part.data !== undefined) return `${JSON.stringify(part.data, null, 2)}\n`;
  const name = part.filename || part.mediaType || "file";
  if (part.url !== undefined) return `[${name}: ${part.url}]\n`;
  return `[${name}]\n`;
}

/** A completed task's last word, unless its reply already says it. */
function finalWord(model) {
  if (model.state !== "completed") return "";
  const reply = (model.artifacts || []).find((a) => a.id === RESPONSE);
  const said = reply ? reply.parts.map(partText).join("") : "";
  return model.status === said ? "" : model.status;
}

/** The agent's main reply is its `response` artifact; any other artifact (tool output
 *  such as `output`, files, data) is a block of its own that can be folded. */
const RESPONSE = "response";

export class View {
  constructor(root) {
    this.list = root.getElementById("task-list");
    this.listEmpty = root.getElementById("task-list-empty");
    this.entries = root.getElementById("entries");
    this.heading = root.getElementById("conversation-heading");
    this.cancelAll = root.getElementById("cancel-all");
    this.announcer = root.getElementById("announcer");
    this.items = new Map(); // task id -> list item
    this.articles = new Map(); // task id -> entry
    this.unsent = new Map(); // pending message id -> entry
  }

  clear() {
    this.items.clear();
    this.articles.clear();
    this.unsent.clear();
    this.list.replaceChildren();
    this.entries.replaceChildren();
  }

  announce(text) {
    this.announcer.textContent = text;
  }

  // -- the task list -------------------------------------------------------------------

  showList(models, contextId, now) {
    const nodes = models.map((model) => this.listItem(model, contextId, now));
    arrange(this.list, nodes);
    for (const id of [...this.items.keys()]) {
      if (!models.some((m) => m.id === id)) this.items.delete(id);
    }
    this.listEmpty.hidden = models.length > 0;
  }

  listItem(model, contextId, now) {
    let item = this.items.get(model.id);
    if (!item) {
      const button = el("button", { type: "button", class: "task-link", "data-action": "open" },
        el("span", { class: "badge" }),
        el("span", { class: "task-title" }),
        el("span", { class: "task-meta" }, el("time", { class: "started" }),
          el("span", { class: "elapsed" }), el("span", { class: "why" })));
      item = el("li", { "data-task-id": model.id }, button);
      this.items.set(model.id, item);
    }
    item.dataset.state = model.state;
    const button = item.firstElementChild;
    button.setAttribute("aria-current", String(model.contextId === contextId));
    setBadge(button.querySelector(".badge"), model);
    setText(button.querySelector(".task-title"), title(model));
    const started = button.querySelector(".started");
    if (model.createdAt !== null) {
      started.dateTime = new Date(model.createdAt).toISOString();
      setText(started, `${startTime(model.createdAt, now)} · `);
    }
    setText(button.querySelector(".elapsed"), formatDuration(elapsedMs(model, now)));
    const why = model.reason && TERMINAL.has(model.state) ? ` · ${model.reason}` : "";
    setText(button.querySelector(".why"), why);
    return item;
  }

  // -- the conversation ---------------------------------------------------------------

  showConversation(contextId, models, now, unsent = []) {
    setText(this.heading, contextId ? `Conversation ${shortId(contextId)}` : "New conversation");
    const nearBottom = this.nearBottom();
    const nodes = models.map((model) => this.entry(model, now));
    arrange(this.entries, [...nodes, ...unsent.map((message) => this.unsentEntry(message))]);
    for (const id of [...this.articles.keys()]) {
      if (!models.some((m) => m.id === id)) this.articles.delete(id);
    }
    for (const id of [...this.unsent.keys()]) {
      if (!unsent.some((m) => m.id === id)) this.unsent.delete(id);
    }
    this.cancelAll.hidden = !models.some(isRunning);
    if (nearBottom) this.entries.scrollTop = this.entries.scrollHeight;
  }

  nearBottom() {
    const box = this.entries;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  entry(model, now) {
    let article = this.articles.get(model.id);
    if (!article) {
      article = this.newEntry(model);
      this.articles.set(model.id, article);
    }
    article.dataset.state = model.state;
    article.setAttribute("aria-label", `Task: ${title(model)}`);
    this.showTurns(article.querySelector(".turns"), model);
    setBadge(article.querySelector(".badge"), model);
    setText(article.querySelector(".elapsed"), formatDuration(elapsedMs(model, now)));
    const cancel = article.querySelector("[data-action=cancel]");
    cancel.hidden = !isRunning(model) || model.canceling;
    cancel.setAttribute("aria-label", `Cancel task: ${title(model)}`);
    this.showArtifacts(article.querySelector(".artifacts"), model);
    const asking = model.state === "input-required" && !model.canceling;
    const running = isRunning(model) && !asking;
    const status = model.reconnecting ? "reconnecting…" : running ? model.status : finalWord(model);
    setText(article.querySelector(".status"), status);
    this.showQuestion(article.querySelector(".answer"), model, asking);
    setText(article.querySelector(".outcome"), outcome(model));
    this.showLineage(article.querySelector(".lineage"), model);
    return article;
  }

  /** A message the server has not accepted: sending, or failed with a Retry button. */
  unsentEntry(message) {
    let article = this.unsent.get(message.id);
    if (!article) {
      article = el("article", { class: "entry unsent", "data-pending-id": message.id },
        el("div", { class: "turns" },
          el("p", { class: "turn user" },
            el("span", { class: "visually-hidden" }, "You: "), message.text)),
        el("div", { class: "unsent-status" },
          el("p", { class: "unsent-text", role: "status" }),
          el("button", { type: "button", "data-action": "retry" }, "Retry"),
          el("button", { type: "button", "data-action": "edit" }, "Edit")));
      this.unsent.set(message.id, article);
    }
    const failed = message.error !== null;
    article.dataset.state = failed ? "unsent" : "sending";
    setText(article.querySelector(".unsent-text"),
      failed ? `Not sent: ${message.error}.` : "Sending…");
    for (const button of article.querySelectorAll("button")) button.hidden = !failed;
    article.querySelector("[data-action=retry]").setAttribute("aria-label",
      `Retry sending: ${message.text}`);
    return article;
  }

  /** The task that delegated this one, and the tasks it delegated (links to their
   *  servers' pages). */
  showLineage(box, model) {
    const key = `${model.parent}|${model.children.map((c) => c.id).join(",")}`;
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    const items = [];
    if (model.parent) items.push(el("span", {}, `delegated by task ${shortId(model.parent)}`));
    for (const child of model.children) {
      const label = `${child.agent || "agent"} · task ${shortId(child.id)}`;
      const href = childLink(child);
      items.push(href ? el("a", { href, rel: "noopener", target: "_blank" }, label)
                      : el("span", {}, label));
    }
    if (model.children.length) items.splice(model.parent ? 1 : 0, 0, el("span", {}, "children:"));
    box.hidden = items.length === 0;
    box.replaceChildren(...items);
  }

  newEntry(model) {
    return el("article", { class: "entry", id: `task-${model.id}`, tabindex: "-1",
                           "data-task-id": model.id },
      el("div", { class: "turns" }),
      el("section", { class: "reply" },
        el("div", { class: "entry-head" },
          el("span", { class: "badge" }),
          el("span", { class: "elapsed" }),
          el("span", { class: "task-id" }, `task ${shortId(model.id)}`),
          el("button", { type: "button", class: "danger", "data-action": "cancel" }, "Cancel")),
        el("div", { class: "artifacts" }),
        el("p", { class: "status" }),
        el("form", { class: "answer", hidden: "" },
          el("label", { for: `answer-${model.id}` }),
          el("div", { class: "composer-row" },
            el("input", { id: `answer-${model.id}`, name: "answer", autocomplete: "off",
                          required: "" }),
            el("button", { type: "submit" }, "Answer"))),
        el("p", { class: "outcome" }),
        el("p", { class: "lineage", hidden: "" })));
  }

  showTurns(box, model) {
    const shown = turns(model);
    const key = shown.map((t) => t.id).join(",");
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...shown.map((turn) => el("p", { class: `turn ${turn.role}` },
      el("span", { class: "visually-hidden" }, turn.role === "user" ? "You: " : "Agent asked: "),
      turn.text)));
  }

  showArtifacts(box, model) {
    for (const artifact of model.artifacts || []) {
      let block = box.querySelector(`[data-artifact="${CSS.escape(artifact.id)}"]`);
      if (!block) {
        block = artifact.id === RESPONSE
          ? el("div", { class: "response", "data-artifact": artifact.id }, el("pre"))
          : el("details", { class: "tool", open: "", "data-artifact": artifact.id },
              el("summary", {}, artifact.name), el("pre"));
        box.append(block);
      }
      setText(block.querySelector("pre"), artifact.parts.map(partText).join(""));
    }
  }

  showQuestion(form, model, asking) {
    form.hidden = !asking;
    const input = form.querySelector("input");
    input.disabled = !asking;
    if (asking) setText(form.querySelector("label"), `The agent asks: ${model.status || "an answer"}`);
  }

  tick(models, now) {
    for (const model of models) {
      if (!isRunning(model)) continue;
      const text = formatDuration(elapsedMs(model, now));
      for (const node of [this.items.get(model.id), this.articles.get(model.id)]) {
        if (node) setText(node.querySelector(".elapsed"), text);
      }
    }
  }

  focusEntry(id) {
    const article = this.articles.get(id);
    if (!article) return;
    article.scrollIntoView({ block: "nearest" });
    article.focus({ preventScroll: true });
  }
}
