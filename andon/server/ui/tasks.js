// What the page knows of a task, and how stream items and fetched tasks change it.
// Every stream item carries its sequence number: an item at or below the last one
// applied is a repeat (a resumed or second stream) and changes nothing.

export const TERMINAL = new Set(["completed", "failed", "canceled", "rejected"]);
export const INTERRUPTED = new Set(["input-required", "auth-required"]);

/** TASK_STATE_INPUT_REQUIRED -> input-required */
export function stateName(wire) {
  return String(wire || "").replace(/^TASK_STATE_/, "").toLowerCase().replace(/_/g, "-");
}

export function isRunning(model) {
  return !TERMINAL.has(model.state);
}

function textOf(message) {
  if (!message) return "";
  return (message.parts || [])
    .map((p) => (p.text !== undefined ? p.text : ""))
    .join("");
}

function turnOf(message) {
  return { id: message.messageId, role: message.role === "ROLE_USER" ? "user" : "agent",
           text: textOf(message) };
}

function artifactOf(raw) {
  return { id: raw.artifactId, name: raw.name || raw.artifactId, parts: [...(raw.parts || [])] };
}

function time(iso) {
  const at = Date.parse(iso || "");
  return Number.isNaN(at) ? null : at;
}

export function newModel(id, contextId) {
  return {
    id,
    contextId,
    state: "submitted",
    canceling: false,
    reason: null,
    stopMs: null,
    parent: null, // the task that delegated this one (andon.parentTask)
    children: [], // tasks this one delegated to other agents (andon.children)
    killed: [], // processes SIGKILLed after the grace, with their commands
    killGrace: null,
    createdAt: null,
    updatedAt: null,
    status: "",
    history: null, // null: not fetched yet
    artifacts: null,
    lastSeq: null, // the sequence number of the last stream item applied
    version: 0, // bumped on every change, for the renderer
  };
}

function setStatus(model, status, metadata) {
  const state = stateName(status.state);
  model.state = state;
  model.updatedAt = time(status.timestamp) ?? model.updatedAt;
  model.status = textOf(status.message);
  model.canceling = !TERMINAL.has(state) && (model.canceling || Boolean(metadata["andon.canceling"]));
  if (metadata["andon.reason"]) model.reason = metadata["andon.reason"];
  if (metadata["andon.stopMs"] !== undefined) model.stopMs = metadata["andon.stopMs"];
  if (metadata["andon.killed"]) model.killed = metadata["andon.killed"];
  if (metadata["andon.killGrace"] !== undefined) model.killGrace = metadata["andon.killGrace"];
  if (metadata["andon.createdAt"]) model.createdAt = time(metadata["andon.createdAt"]);
  if (metadata["andon.parentTask"]) model.parent = String(metadata["andon.parentTask"]);
  if (Array.isArray(metadata["andon.children"])) model.children = metadata["andon.children"];
}

/** A Task as fetched (GetTask, ListTasks, CancelTask). An older view of the task (by
 *  its status time) leaves a newer one alone. Its history and artifacts replace ours
 *  only when `content` is true: not while a stream adds to them, since a fetched task
 *  has no sequence number to tell which chunks it holds. */
export function mergeTask(model, task, content) {
  const updatedAt = time(task.status.timestamp);
  if (model.updatedAt !== null && updatedAt !== null && updatedAt < model.updatedAt) {
    return false;
  }
  setStatus(model, task.status, task.metadata || {});
  if (content) {
    if (task.history) model.history = task.history.map(turnOf);
    if (task.history || task.artifacts) model.artifacts = (task.artifacts || []).map(artifactOf);
    model.lastSeq = null;
  }
  model.version += 1;
  return true;
}

/** One item of a stream (its SSE id is `seq`). */
export function applyItem(model, seq, item) {
  if (item.task) {
    // The task as of event `seq`: what follows goes on from exactly there.
    if (model.lastSeq !== null && seq < model.lastSeq) return false;
    model.updatedAt = null;
    mergeTask(model, item.task, true);
    model.lastSeq = seq;
    return true;
  }
  if (model.lastSeq !== null && seq <= model.lastSeq) return false;
  model.lastSeq = seq;
  if (item.statusUpdate) {
    const update = item.statusUpdate;
    setStatus(model, update.status, update.metadata || {});
    if (update.status.message && model.history) {
      const turn = turnOf(update.status.message);
      if (!model.history.some((t) => t.id === turn.id)) model.history.push(turn);
    }
  } else if (item.artifactUpdate) {
    addChunk(model, item.artifactUpdate);
  }
  model.version += 1;
  return true;
}

function addChunk(model, update) {
  const chunk = artifactOf(update.artifact);
  model.artifacts = model.artifacts || [];
  const existing = model.artifacts.find((a) => a.id === chunk.id);
  if (!existing) model.artifacts.push(chunk);
  else if (update.append) existing.parts.push(...chunk.parts);
  else Object.assign(existing, chunk);
}

/** Whether a stream of this task has ended: it stops at a final or interrupted state. */
export function streamEnded(model) {
  return TERMINAL.has(model.state) || INTERRUPTED.has(model.state);
}

/** The user's messages and the questions they answered, in order. A question is an
 *  agent message the user answered: the one right before a user message. */
export function turns(model) {
  const history = model.history || [];
  return history.filter(
    (turn, i) => turn.role === "user" || (history[i + 1] && history[i + 1].role === "user"),
  );
}

export function request(model) {
  const first = (model.history || []).find((t) => t.role === "user");
  return first ? first.text : "";
}

export function elapsedMs(model, now) {
  if (model.createdAt === null) return null;
  const end = TERMINAL.has(model.state) ? model.updatedAt ?? now : now;
  return Math.max(0, end - model.createdAt);
}

export function formatDuration(ms) {
  if (ms === null) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.floor((ms % 60_000) / 1000);
  if (minutes < 60) return `${minutes} min ${seconds} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A duration for people, as andon/protocol/stops.py says it: 0.55 ms, 4.4 ms, 21 ms, 2.0 s, 12 s. */
export function formatMs(ms) {
  const value = Number(ms);
  if (value < 1) return `${Number(value.toPrecision(2))} ms`;
  if (value < 10) return `${value.toFixed(1)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  return value < 10000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value / 1000)} s`;
}

/** How the stop went, in the words of andon/protocol/stops.py's describe_stop. */
export function describeStop(model) {
  let words = `stopped in ${formatMs(model.stopMs)}`;
  const count = model.killed.length;
  if (count) {
    const grace = model.killGrace !== null ? `the ${model.killGrace} s grace` : "the grace";
    words += `: ${count} process${count > 1 ? "es" : ""} killed after ${grace}`;
  }
  return words;
}

/** The state as shown: `canceling…` while a cancel is under way. */
export function shownState(model) {
  return model.canceling ? "canceling…" : model.state;
}

/** One line on why and how a task ended; empty while it runs. */
export function outcome(model) {
  if (!TERMINAL.has(model.state)) return "";
  const at = model.updatedAt ? new Date(model.updatedAt).toLocaleTimeString() : "";
  if (model.state === "canceled") {
    const parts = [`reason: ${model.reason || "unknown"}`];
    if (model.stopMs !== null) parts.push(describeStop(model));
    if (at) parts.push(`at ${at}`);
    return `canceled · ${parts.join(" · ")}`;
  }
  if (model.state === "failed") {
    const why = model.reason && model.reason !== "error" ? ` (reason: ${model.reason})` : "";
    return `failed${why}${model.status ? `: ${model.status}` : ""}`;
  }
  return model.state === "rejected" ? `rejected: ${model.status || "no reason given"}` : "";
}

/** Where a delegated task can be seen: its server's page, at its conversation. */
export function childLink(child) {
  const base = String(child.url || "").replace(/\/+$/, "");
  if (!/^https?:\/\//.test(base)) return null;
  return child.contextId ? `${base}/#context=${encodeURIComponent(child.contextId)}` : `${base}/`;
}
