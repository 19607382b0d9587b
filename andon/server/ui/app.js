// The page: one conversation (an A2A context) at a time, the task list beside it.
// Tasks of the conversation that run are followed live; everything else is kept
// fresh by listing tasks every few seconds.

import { Api, ApiError, newId } from "./api.js";
import { follow } from "./follow.js";
import { TERMINAL, isRunning, mergeTask, newModel, streamEnded } from "./tasks.js";
import { View, title } from "./view.js";

const POLL_MS = 2000;
const TICK_MS = 500;
// A browser opens at most six connections to a server: keep some for everything else.
const MAX_STREAMS = 4;
const TOKEN_KEY = "andon.token";

const $ = (id) => document.getElementById(id);
const api = new Api();
const view = new View(document);
const models = new Map(); // task id -> model
const followers = new Map(); // task id -> AbortController of the stream that follows it
const fetching = new Set(); // task ids whose full task is being fetched
let listed = []; // ids of the task list, newest first
let contextId = null; // the conversation shown; null before its first message
let generation = 0; // bumped when the token changes: late answers of before are dropped
// Messages sent but not (yet) accepted by the server: id -> {id, text, contextId, skill,
// error}. A message whose send failed stays here, with its error and a Retry button.
const pending = new Map();

function modelOf(task) {
  let model = models.get(task.id);
  if (!model) {
    model = newModel(task.id, task.contextId);
    models.set(task.id, model);
  }
  return model;
}

function conversation() {
  return [...models.values()]
    .filter((m) => contextId !== null && m.contextId === contextId)
    .sort((a, b) => (a.createdAt ?? Infinity) - (b.createdAt ?? Infinity));
}

function render() {
  const now = Date.now();
  view.showList(listed.map((id) => models.get(id)).filter(Boolean), contextId, now);
  const unsent = [...pending.values()].filter((p) => p.contextId === contextId);
  view.showConversation(contextId, conversation(), now, unsent);
}

// -- alerts ---------------------------------------------------------------------------

let alertKind = "";

function showAlert(text, kind = "error") {
  const box = $("alert");
  box.textContent = text;
  box.hidden = false;
  alertKind = kind;
}

function clearAlert(kind) {
  if (kind && alertKind !== kind) return;
  $("alert").hidden = true;
  alertKind = "";
}

function report(error) {
  if (error.name === "AbortError") return;
  if (error instanceof ApiError && error.status === 401) {
    $("token-form").hidden = false;
    if (alertKind !== "auth") {
      showAlert(`This server needs a bearer token (${error.message}): enter yours above.`, "auth");
      $("token-input").focus();
    }
    return;
  }
  if (error instanceof ApiError && error.status === 0) showAlert(`${error.message}.`, "offline");
  else showAlert(error.message || String(error));
}

// -- fetching -------------------------------------------------------------------------

/** Lists the tasks (of one state, if the filter says so) and the conversation's own. */
async function poll() {
  const mine = generation;
  const state = $("state-filter").value;
  const query = new URLSearchParams({ pageSize: "100" });
  if (state) query.set("status", state);
  try {
    const page = await api.get(`/tasks?${query}`);
    const inContext = contextId
      ? await api.get(`/tasks?${new URLSearchParams({ pageSize: "100", contextId })}`)
      : { tasks: [] };
    if (mine !== generation) return;
    clearAlert("offline");
    listed = page.tasks.map((task) => task.id);
    for (const task of [...page.tasks, ...inContext.tasks]) merge(task);
    render();
    reconcile();
  } catch (error) {
    report(error);
  }
}

/** A task from a list: its status goes in, and if it changed while no stream followed
 *  it, its content is fetched again. */
function merge(task) {
  const model = modelOf(task);
  const before = `${model.state}|${model.updatedAt}`;
  if (!mergeTask(model, task, !followers.has(model.id))) return;
  if (`${model.state}|${model.updatedAt}` !== before && !followers.has(model.id)) {
    model.stale = true;
  }
}

/** Follows the conversation's running tasks; fetches what is shown but not known. */
function reconcile() {
  for (const model of conversation()) {
    if (followers.has(model.id)) continue;
    if (!streamEnded(model) && followers.size < MAX_STREAMS) startFollowing(model);
    else if (model.history === null || model.stale) fetchTask(model.id);
  }
  for (const id of listed) {
    const model = models.get(id);
    if (model && model.history === null && !followers.has(id)) fetchTask(id);
  }
}

/** Fetches a task; `content`: its history and artifacts too, else its status only. */
async function fetchTask(id, content = true) {
  if (fetching.has(id) || fetching.size >= 2) return;
  const mine = generation;
  fetching.add(id);
  let task = null;
  try {
    task = await api.get(`/tasks/${encodeURIComponent(id)}`);
  } catch (error) {
    if (mine === generation) report(error);
  }
  fetching.delete(id);
  if (!task || mine !== generation) return;
  const model = modelOf(task);
  if (!followers.has(id)) {
    model.updatedAt = null;
    mergeTask(model, task, content);
    model.stale = false;
  }
  render();
  reconcile(); // the next task waiting to be fetched
}

// -- streams --------------------------------------------------------------------------

function startFollowing(model, first = null, message = null) {
  const controller = new AbortController();
  const mine = generation;
  const own = (m) => {
    const previous = followers.get(m.id);
    if (previous && previous !== controller) previous.abort();
    followers.set(m.id, controller);
  };
  if (model) own(model);
  const hooks = {
    model,
    found(task) {
      if (message) pending.delete(message.id); // the server has it: it is a task now
      const found = modelOf(task);
      own(found);
      const filter = $("state-filter").value;
      if (!listed.includes(found.id) && (!filter || filter === task.status.state)) {
        listed.unshift(found.id);
      }
      if (contextId === null) showContext(task.contextId);
      return found;
    },
    changed(m) {
      if (mine !== generation) return;
      const was = m.announced;
      m.reconnecting = false;
      if (streamEnded(m) && was !== m.state) {
        m.announced = m.state;
        view.announce(`Task ${title(m)}: ${m.state}`);
      }
      render();
    },
    reconnecting(m) {
      m.reconnecting = true;
      render();
    },
  };
  follow(api, first, hooks, controller.signal)
    .catch((error) => {
      if (mine !== generation) return hooks.model;
      if (message && pending.has(message.id)) {
        // Never accepted: the message stays, saying why, with a Retry button.
        message.error = error.message || String(error);
        view.announce(`Message not sent: ${message.error}`);
        render();
      } else {
        report(error);
      }
      return hooks.model;
    })
    .then((m) => {
      const followed = m || hooks.model;
      if (!followed) return;
      if (followers.get(followed.id) === controller) followers.delete(followed.id);
      followed.reconnecting = false;
      // The final status event does not say how long the stop took; the task does.
      if (!controller.signal.aborted && TERMINAL.has(followed.state)) {
        fetchTask(followed.id, false);
      }
      render();
    });
}

// -- actions --------------------------------------------------------------------------

function send(text) {
  const message = { id: newId(), text, contextId, skill: $("skill-select").value, error: null };
  pending.set(message.id, message);
  deliver(message);
}

/** Sends a pending message (again): a new message id each time, the same text. */
function deliver(message) {
  message.error = null;
  const body = { message: { messageId: newId(), role: "ROLE_USER", parts: [{ text: message.text }] } };
  if (message.contextId) body.message.contextId = message.contextId;
  if (message.skill) body.metadata = { "andon.skill": message.skill };
  render();
  startFollowing(null, { path: "/message:stream", body }, message);
}

function answer(model, text) {
  const message = {
    messageId: newId(),
    role: "ROLE_USER",
    parts: [{ text }],
    taskId: model.id,
    contextId: model.contextId,
  };
  startFollowing(model, { path: "/message:stream", body: { message } });
}

function confirmDialog(heading, text, yes) {
  const dialog = $("confirm");
  $("confirm-title").textContent = heading;
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

async function cancelTask(model) {
  const sure = await confirmDialog(
    `Cancel “${title(model)}”?`,
    "The task stops: its code, its processes and its requests. This cannot be undone.",
    "Cancel task",
  );
  if (!sure || !isRunning(model)) return;
  model.canceling = true;
  view.announce(`Task ${title(model)}: canceling`);
  render();
  try {
    const task = await api.post(`/tasks/${encodeURIComponent(model.id)}:cancel`, {});
    mergeTask(model, task, !followers.has(model.id));
  } catch (error) {
    model.canceling = false;
    report(error);
    fetchTask(model.id);
  }
  render();
}

async function cancelConversation() {
  const running = conversation().filter(isRunning);
  if (!running.length) return;
  const count = running.length === 1 ? "the running task" : `all ${running.length} running tasks`;
  const sure = await confirmDialog(
    "Cancel the whole conversation?",
    `This cancels ${count} of this conversation (reason: operator).`,
    "Cancel all",
  );
  if (!sure) return;
  for (const model of running) model.canceling = true;
  render();
  try {
    const result = await api.post("/tasks:cancel", { contextId, reason: "operator" });
    for (const entry of result.results || []) {
      const model = models.get(entry.id);
      if (model && entry.task) mergeTask(model, entry.task, !followers.has(model.id));
    }
  } catch (error) {
    report(error);
  }
  for (const model of running) if (TERMINAL.has(model.state)) model.canceling = false;
  render();
  poll();
}

function showContext(id) {
  // Streams are for the conversation shown (a browser has few connections to spare);
  // the tasks of the others are kept fresh by the task list.
  for (const [taskId, controller] of followers) {
    if (models.get(taskId).contextId !== id) {
      controller.abort();
      followers.delete(taskId);
    }
  }
  contextId = id;
  const hash = id ? `#context=${encodeURIComponent(id)}` : "#";
  if (location.hash !== hash && !(id === null && location.hash === "")) {
    history.replaceState(null, "", hash === "#" ? location.pathname : hash);
  }
  render();
}

function openContext(id) {
  showContext(id);
  poll();
}

function contextFromHash() {
  const match = /^#context=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function useToken(token) {
  api.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  $("token-input").value = "";
  $("token-input").placeholder = token ? "a token is set" : "only if the server asks for one";
  // Another token is another principal: forget everything the last one saw.
  generation += 1;
  for (const controller of followers.values()) controller.abort();
  followers.clear();
  models.clear();
  pending.clear();
  listed = [];
  view.clear();
  clearAlert();
  showContext(null);
  poll();
}

let skills = []; // the agent card's skills

/** The skill picker (when the agent has more than one skill) and the examples of the
 *  skill picked (of every skill when there is no choice). */
function showSkills() {
  const select = $("skill-select");
  const chosen = skills.find((s) => s.id === select.value);
  $("skill-box").hidden = skills.length < 2;
  $("skill-description").textContent = chosen ? chosen.description || "" : "";
  const examples = (chosen ? [chosen] : skills).flatMap((s) => s.examples || []).slice(0, 6);
  const box = $("examples");
  box.replaceChildren();
  if (!examples.length) return;
  box.append("Try: ");
  examples.forEach((example, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.textContent = example;
    button.addEventListener("click", () => {
      const text = $("composer-text");
      text.value = example;
      text.focus();
    });
    box.append(button, i < examples.length - 1 ? " " : "");
  });
}

async function showAgent() {
  try {
    const card = await api.get("/.well-known/agent-card.json");
    $("agent-name").textContent = card.name || "";
    document.title = card.name ? `${card.name} · andon` : "andon";
    // The token bar is for servers that ask for a token (the card says so).
    if (card.securitySchemes && Object.keys(card.securitySchemes).length) {
      $("token-form").hidden = false;
    }
    skills = (card.skills || []).filter((s) => s && typeof s.id === "string");
    const select = $("skill-select");
    select.replaceChildren(
      ...skills.map((s) => {
        const option = document.createElement("option");
        option.value = s.id;
        option.textContent = s.name && s.name !== s.id ? `${s.name} (${s.id})` : s.id;
        return option;
      }),
    );
    if (skills.length < 2) select.value = "";
    showSkills();
  } catch {
    // The page works without the card; it only names the agent, its skills and examples.
  }
}

// -- wiring ---------------------------------------------------------------------------

function taskOfEvent(event) {
  const holder = event.target.closest("[data-task-id]");
  return holder ? models.get(holder.dataset.taskId) : undefined;
}

function submitComposer() {
  const box = $("composer-text");
  const text = box.value.trim();
  if (!text) return;
  box.value = "";
  send(text);
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  submitComposer();
});
$("composer-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submitComposer();
  }
});
$("entries").addEventListener("click", (event) => {
  const unsent = event.target.closest("[data-pending-id]");
  const message = unsent && pending.get(unsent.dataset.pendingId);
  if (message && event.target.closest("[data-action=retry]")) {
    deliver(message);
    return;
  }
  if (message && event.target.closest("[data-action=edit]")) {
    pending.delete(message.id);
    $("composer-text").value = message.text;
    $("composer-text").focus();
    render();
    return;
  }
  const button = event.target.closest("[data-action=cancel]");
  const model = button && taskOfEvent(event);
  if (model) cancelTask(model);
});
$("entries").addEventListener("submit", (event) => {
  event.preventDefault();
  const model = taskOfEvent(event);
  const input = event.target.querySelector("input");
  const text = input.value.trim();
  if (!model || !text) return;
  input.value = "";
  model.state = "working"; // until the stream says more: the question is answered
  model.version += 1;
  render();
  answer(model, text);
  $("composer-text").focus();
});
$("task-list").addEventListener("click", (event) => {
  const model = event.target.closest("[data-action=open]") && taskOfEvent(event);
  if (!model) return;
  openContext(model.contextId);
  view.focusEntry(model.id);
});
$("new-conversation").addEventListener("click", () => {
  showContext(null);
  $("composer-text").focus();
});
$("cancel-all").addEventListener("click", cancelConversation);
$("skill-select").addEventListener("change", showSkills);
$("state-filter").addEventListener("change", poll);
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useToken($("token-input").value.trim());
});
$("token-forget").addEventListener("click", () => useToken(""));
window.addEventListener("hashchange", () => {
  const id = contextFromHash();
  if (id !== contextId) openContext(id);
});

api.token = sessionStorage.getItem(TOKEN_KEY) || "";
if (api.token) {
  $("token-input").placeholder = "a token is set";
  $("token-form").hidden = false;
}
showContext(contextFromHash());
showAgent();
poll();
setInterval(() => {
  if (!document.hidden) poll();
}, POLL_MS);
setInterval(() => {
  const now = Date.now();
  view.tick([...models.values()], now);
}, TICK_MS);
