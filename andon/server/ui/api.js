// The server's HTTP+JSON binding (A2A 1.0) from the browser. Streams are read with
// fetch rather than EventSource, which can send neither the bearer token nor a
// Last-Event-ID of our choosing.

export class ApiError extends Error {
  constructor(status, message, reason = "") {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

function errorOf(status, body) {
  const error = body && body.error;
  if (error && typeof error === "object") {
    const info = (error.details || []).find((d) => d.reason) || {};
    return new ApiError(status, error.message || `HTTP ${status}`, info.reason || "");
  }
  return new ApiError(status, `the server answered HTTP ${status}`);
}

function parseJSON(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

export class Api {
  constructor() {
    this.token = "";
  }

  headers(extra) {
    const headers = { "A2A-Version": "1.0", ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  async request(method, path, body, extraHeaders = {}, signal = undefined) {
    const headers = this.headers(extraHeaders);
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal,
      });
    } catch (cause) {
      if (cause.name === "AbortError") throw cause;
      throw new ApiError(0, "cannot reach the andon server");
    }
    if (!response.ok) throw errorOf(response.status, parseJSON(await response.text()));
    return response;
  }

  async get(path) {
    return (await this.request("GET", path)).json();
  }

  async post(path, body = {}) {
    return (await this.request("POST", path, body)).json();
  }

  /** The items of a streaming call, as {id, event, data}; `data` parsed from JSON.
   *  `lastEventId` resumes a stream after that event. */
  async *stream(path, { body, lastEventId, signal } = {}) {
    const headers = {
      Accept: "text/event-stream",
      // Closing this page (or losing the network) must not cancel the task.
      "X-Andon-On-Disconnect": "continue",
    };
    if (lastEventId !== undefined && lastEventId !== null) {
      headers["Last-Event-ID"] = String(lastEventId);
    }
    const method = body === undefined ? "GET" : "POST";
    const response = await this.request(method, path, body, headers, signal);
    for await (const event of readEvents(response.body)) {
      yield { ...event, data: parseJSON(event.data) };
    }
  }
}

/** Server-Sent Events from a byte stream (the text/event-stream format). */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { id: null, event: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (event.data.length) {
            yield { id: event.id, event: event.event, data: event.data.join("\n") };
          }
          event = { id: null, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data.push(value);
        else if (field === "id") event.id = value;
        else if (field === "event") event.event = value;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** A random message id: crypto.randomUUID exists only on https and localhost pages. */
export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
