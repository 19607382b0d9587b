// Following one task's stream to its end (or to a question), resuming after a dropped
// connection from the last event applied, so that nothing is missed or shown twice.

import { ApiError } from "./api.js";
import { applyItem, streamEnded } from "./tasks.js";

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** An error no reconnect can help: the request itself was refused. */
function refused(error) {
  return error instanceof ApiError && error.status >= 400 && error.status < 500;
}

/**
 * Reads the task's stream until it ends or `signal` aborts; returns the task's model.
 *
 * `first` is the request that opens the stream ({path, body}: SendStreamingMessage,
 * or an answer), or null to subscribe to `hooks.model` (from its last event when it
 * has one, else from a fresh snapshot). Hooks: `found(task)` gives the model of the
 * task a send created, `changed(model)` after each item applied, `reconnecting(model)`
 * before each new attempt.
 */
export async function follow(api, first, hooks, signal) {
  let model = hooks.model;
  let request = first;
  let attempt = 0;
  for (;;) {
    try {
      const path = request ? request.path : `/tasks/${encodeURIComponent(model.id)}:subscribe`;
      const lastEventId = request ? null : model.lastSeq;
      const items = api.stream(path, { body: request ? request.body : undefined, lastEventId, signal });
      for await (const { id, event, data } of items) {
        if (event === "error") throw new ApiError(502, (data && data.message) || "stream failed");
        if (!data) continue;
        if (!model) model = hooks.found(data.task);
        if (applyItem(model, Number(id), data)) hooks.changed(model);
        attempt = 0;
        if (streamEnded(model)) return model;
      }
    } catch (error) {
      if (signal.aborted) return model;
      // Without a task there is nothing to resume, and sending again would send twice.
      if (!model || refused(error)) throw error;
    }
    if (signal.aborted) return model;
    if (!model) throw new ApiError(0, "the stream closed before the task was created");
    request = null;
    hooks.reconnecting(model);
    await pause(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)], signal);
    attempt += 1;
    if (signal.aborted) return model;
  }
}
