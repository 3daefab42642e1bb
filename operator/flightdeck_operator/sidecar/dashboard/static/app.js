// FlightDeck dashboard: the bearer token (this tab only), htmx's requests, writes through the
// HTTP API, downloads, the theme, and the ledger's links checked in the browser. No inline script
// anywhere (the Content-Security-Policy forbids it); every text from the server is set with
// textContent, never parsed as HTML, unless htmx swaps a fragment the server escaped.
(() => {
  "use strict";
  const TOKEN = "flightdeck-token";
  const THEME = "flightdeck-theme";
  let authRequired = true;

  const token = () => sessionStorage.getItem(TOKEN);
  const headers = () => (authRequired && token() ? { Authorization: `Bearer ${token()}` } : {});
  window.flightdeck = { headers };

  // --- theme: system, light or dark, remembered in this browser --------------------------------
  const theme = document.getElementById("theme");
  const saved = localStorage.getItem(THEME) || "system";
  document.documentElement.dataset.theme = saved;
  theme.value = saved;
  theme.addEventListener("change", () => {
    document.documentElement.dataset.theme = theme.value;
    localStorage.setItem(THEME, theme.value);
    document.dispatchEvent(new CustomEvent("fd:theme"));
  });

  // --- signing in ------------------------------------------------------------------------------
  const auth = document.getElementById("auth");
  const content = document.getElementById("content");
  const authError = document.getElementById("auth-error");
  const signOut = document.getElementById("sign-out");

  function showAuth(message) {
    auth.hidden = false;
    content.hidden = true;
    authError.hidden = !message;
    authError.textContent = message || "";
  }

  function ready() {
    auth.hidden = true;
    content.hidden = false;
    signOut.hidden = !authRequired;
    document.body.dispatchEvent(new CustomEvent("fd:ready"));
  }

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN, value);
    document.getElementById("token").value = "";
    ready();
  });
  signOut.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN);
    showAuth("");
  });

  async function start() {
    try {
      const health = await (await fetch("/health", { credentials: "omit" })).json();
      authRequired = health.auth_mode !== "none";
    } catch {
      authRequired = true;
    }
    if (authRequired && !token()) showAuth("");
    else ready();
  }

  // --- htmx: the token on every request, errors shown where the answer would be -----------------
  document.body.addEventListener("htmx:configRequest", (event) => {
    Object.assign(event.detail.headers, headers());
  });
  document.body.addEventListener("htmx:beforeRequest", (event) => {
    if (authRequired && !token()) event.preventDefault();
  });
  document.body.addEventListener("htmx:responseError", (event) => {
    const xhr = event.detail.xhr;
    if (xhr.status === 401) {
      sessionStorage.removeItem(TOKEN);
      showAuth("The token was not accepted (401): enter another one.");
      return;
    }
    const box = document.createElement("p");
    box.className = "error";
    box.textContent = `${xhr.status}: ${messageOf(xhr.responseText, xhr.statusText)}`;
    event.detail.target.replaceChildren(box);
  });

  function messageOf(text, fallback) {
    try {
      const detail = JSON.parse(text).detail;
      if (typeof detail === "string") return detail;
      if (detail && detail.message) return detail.message;
      return JSON.stringify(detail);
    } catch {
      return fallback || "request failed";
    }
  }

  // --- writes go through the HTTP API (its RBAC decides); the answer is shown as text ------------
  document.body.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    event.preventDefault();
    const path = (event.submitter && event.submitter.dataset.apiOverride) || form.dataset.api;
    const body = Object.fromEntries(new FormData(form).entries());
    const result = document.getElementById("action-result");
    result.hidden = false;
    result.textContent = "Waiting for the operator…";
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers() },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    result.replaceChildren(outcome(response.status, text));
    document.body.dispatchEvent(new CustomEvent("fd:changed"));
  });

  function outcome(status, text) {
    const wrapper = document.createElement("div");
    wrapper.dataset.status = String(status);
    const line = document.createElement("p");
    line.className = status < 300 ? "" : "error";
    let summary = messageOf(text, "");
    try {
      const data = JSON.parse(text);
      if (status === 200 && data.policy) summary = `Done: ${data.action || "promote"} of ${data.release_id}`;
      if (status === 202) summary = data.message || "Approval recorded; more approvals are needed.";
    } catch {
      // not JSON: the status says enough
    }
    line.textContent = `${status}: ${summary}`;
    const details = document.createElement("pre");
    details.textContent = text;
    wrapper.append(line, details);
    return wrapper;
  }

  // --- downloads with the token (a plain link cannot carry it) ----------------------------------
  document.body.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-download]");
    if (!button) return;
    const response = await fetch(button.dataset.download, { headers: headers() });
    if (!response.ok) {
      button.textContent = `Download failed (${response.status})`;
      return;
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = button.dataset.filename || "download";
    link.click();
    URL.revokeObjectURL(link.href);
  });

  // --- the ledger: each shown entry's prev_hash must be the hash of the entry before it ---------
  document.body.addEventListener("htmx:afterSettle", () => {
    const table = document.querySelector("[data-ledger-rows]");
    const note = document.querySelector("[data-chain-check]");
    if (!table || !note) return;
    const rows = [...table.querySelectorAll("tr[data-seq]")].map((row) => ({
      seq: Number(row.dataset.seq),
      hash: row.dataset.hash,
      prev: row.dataset.prev,
    }));
    const bySeq = new Map(rows.map((row) => [row.seq, row]));
    let checked = 0;
    const broken = [];
    for (const row of rows) {
      const before = bySeq.get(row.seq - 1);
      if (!before) continue;
      checked += 1;
      if (row.prev !== before.hash) broken.push(row.seq);
    }
    note.className = broken.length ? "error" : "hint";
    note.textContent = broken.length
      ? `links broken in your browser's view at seq ${broken.join(", ")}`
      : `${checked} link(s) between the entries shown checked in your browser`;
    note.dataset.checked = String(checked);
    note.dataset.broken = String(broken.length);
  });

  document.addEventListener("DOMContentLoaded", start);
})();
