// Miroir's fleet page: polls this gateway's /_miroir/ui/fleet (the topology it follows,
// joined with the control plane's status and live move progress) and Meilisearch's /tasks,
// and redraws. Plain DOM, no framework and no build step; text is always set with
// textContent, never parsed as HTML (index uids and error messages come from clients).
"use strict";

const KEY_STORAGE = "miroir.fleet.key";
const FLEET_EVERY_MS = 1000;
const TASKS_EVERY_MS = 3000;
const REQUEST_TIMEOUT_MS = 5000;

const $ = (selector, root = document) => root.querySelector(selector);

// h("td", {class: "x", data: {node: "a"}}, "text", child…)
function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "data") {
      for (const [k, v] of Object.entries(value)) element.dataset[k] = String(v);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const number = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en"));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const plural = (n, one, many = `${one}s`) => `${number(n)} ${n === 1 ? one : many}`;

const ago = (ms) => (ms === null || ms === undefined ? "—" : `${duration(ms / 1000)} ago`);

function badge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

// ---- fetching -------------------------------------------------------------------------

class AuthError extends Error {}

async function get(path) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${key}` },
      signal: controller.signal,
      cache: "no-store",
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      throw new AuthError(body.message || `HTTP ${response.status}`);
    }
    if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
    return body;
  } finally {
    clearTimeout(timer);
  }
}

// ---- drawing --------------------------------------------------------------------------

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function drawSummary(fleet) {
  const cp = fleet.controlPlane;
  const leader = cp.reachable && cp.leader ? cp.leader.id : "unknown";
  const summary = $("#summary");
  summary.dataset.version = fleet.topologyVersion;
  summary.replaceChildren(
    h("span", {}, `Topology version ${fleet.topologyVersion}`),
    h("span", {}, `leader ${leader}`),
    h("span", {}, [plural(fleet.nodes.length, "node"), plural(fleet.groups.length, "group"), plural(fleet.indexes.length, "index", "indexes")].join(", ")),
    h("span", { id: "updated" }, `updated ${new Date(fleet.generatedAtMs).toLocaleTimeString("en-GB")} by gateway ${fleet.gatewayId}`),
  );
  const problem = $("#problem");
  problem.hidden = cp.reachable;
  problem.textContent = cp.reachable ? "" : `Control plane unreachable: ${cp.error}. Showing this gateway's topology.`;
}

function drawNodes(fleet) {
  const groups = new Map(fleet.groups.map((g) => [g.id, g.state]));
  fill($("#nodes tbody"), fleet.nodes.map((n) => h("tr", { data: { node: n.id } },
    h("th", { scope: "row" }, n.id),
    h("td", { data: { field: "group" } }, `${n.group} `, badge(groups.get(n.group) || "unknown")),
    h("td", { data: { field: "state" } }, badge(n.state)),
    h("td", { data: { field: "copies" }, class: "num" }, number(n.copies)),
    h("td", { data: { field: "stale" }, class: "num" }, number(n.staleCopies)),
    h("td", { class: "num" }, n.p95Ms === null ? "—" : `${n.p95Ms.toFixed(1)} ms`),
    h("td", { class: "address" }, n.address),
  )));
}

function moveProgress(m) {
  const total = m.documentsTotal || 0;
  const percent = total > 0 ? Math.min(100, Math.floor((100 * m.documentsCopied) / total)) : null;
  return h("span", { class: "move" },
    h("span", { class: "phase" }, badge(m.phase)),
    ` ${m.from.join(", ") || "∅"} → ${m.to.join(", ")}`,
    percent === null ? "" : ` · ${percent} %`,
    m.etaSeconds === null ? "" : ` · ETA ${duration(m.etaSeconds)}`,
  );
}

function drawOperations(fleet) {
  const list = $("#operations .list");
  if (fleet.operations.length === 0) {
    list.replaceChildren(h("p", { class: "hint" }, "No operation in progress or recently finished."));
    return;
  }
  list.replaceChildren(...fleet.operations.map((op) => {
    const moves = op.moves.map((m) => h("tr", { data: { index: m.index, group: m.group, shard: m.shard } },
      h("td", {}, m.index),
      h("td", { class: "num" }, m.group),
      h("td", { class: "num" }, m.shard),
      h("td", {}, badge(m.phase)),
      h("td", {}, `${m.from.join(", ") || "∅"} → ${m.to.join(", ")}`),
      h("td", { class: "num", data: { field: "copied" } },
        `${number(m.documentsCopied)} / ${m.documentsTotal ? number(m.documentsTotal) : "?"}`),
      h("td", { class: "num" }, m.documentsPerSecond > 0 ? `${number(Math.round(m.documentsPerSecond))}/s` : "—"),
      h("td", { class: "num" }, duration(m.etaSeconds)),
      h("td", { class: "error" }, m.lastError || ""),
    ));
    const finished = op.finishedAtMs !== null;
    return h("article", { class: "operation", data: { operation: op.id, state: op.state } },
      h("h3", {}, `#${op.id} ${op.description} `, badge(op.state)),
      h("p", {},
        h("progress", { max: Math.max(op.movesTotal, 1), value: op.movesDone, "aria-label": `moves done of operation ${op.id}` }),
        h("span", { data: { field: "progress" } },
          ` ${op.movesDone} of ${op.movesTotal} moves · ${number(op.documentsCopied)} documents copied`),
        finished ? ` · finished ${new Date(op.finishedAtMs).toLocaleTimeString("en-GB")}` : ` · ETA ${duration(op.etaSeconds)}`,
      ),
      moves.length === 0 ? "" : h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Index", "Group#", "Shard#", "Phase", "Owners", "Copied#", "Rate#", "ETA#", "Last error"]
          .map((t) => h("th", { scope: "col", class: t.endsWith("#") ? "num" : null }, t.replace("#", ""))))),
        h("tbody", {}, moves),
      )),
    );
  }));
}

// Which indexes' shard maps the operator opened or closed, kept across redraws; and what
// the map last showed, so that an unchanged map is not rebuilt (nor its scroll reset).
const shardMapOpen = new Map();
let shardMapShown = "";

function drawShardMap(fleet) {
  const shown = JSON.stringify(fleet.indexes);
  if (shown === shardMapShown) return;
  shardMapShown = shown;
  $("#shard-map .list").replaceChildren(...fleet.indexes.map((index) => {
    const groups = index.groups;
    const rows = [];
    for (let shard = 0; shard < index.shardCount; shard++) {
      rows.push(h("tr", {},
        h("th", { scope: "row", class: "num" }, shard),
        ...groups.map((g) => {
          const s = g.shards[shard];
          if (!s) return h("td", {}, "—");
          const nodes = s.readNodes.map((n) => (s.staleNodes.includes(n) ? `${n} (stale)` : n));
          return h("td", {
            class: [s.move ? "moving" : "", s.blocked ? "blocked" : ""].join(" ").trim() || null,
            data: { index: index.uid, group: g.group, shard: s.shard, nodes: s.readNodes.join(",") },
          },
          h("span", { class: "nodes" }, nodes.join(", ") || "none"),
          s.blocked ? h("span", { class: "flag" }, " writes held") : "",
          s.move ? h("br") : "", s.move ? moveProgress(s.move) : "");
        }),
      ));
    }
    const aliases = index.aliases.length ? ` · aliases ${index.aliases.join(", ")}` : "";
    const open = shardMapOpen.has(index.uid) ? shardMapOpen.get(index.uid) : fleet.indexes.length <= 4;
    const details = h("details", { open: open || null, data: { index: index.uid } },
      h("summary", {}, h("strong", {}, index.uid),
        ` · ${index.shardCount} shards · ${index.replicationFactor} ${index.replicationFactor === 1 ? "copy" : "copies"} per group${aliases}`),
      h("div", { class: "scroll" }, h("table", { class: "map" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "Shard"), ...groups.map((g) => h("th", { scope: "col" }, `Group ${g.group}`)))),
        h("tbody", {}, rows),
      )),
    );
    details.addEventListener("toggle", () => shardMapOpen.set(index.uid, details.open));
    return details;
  }));
}

function drawSettings(fleet) {
  fill($("#settings tbody"), fleet.indexes.map((i) => h("tr", { data: { index: i.uid } },
    h("th", { scope: "row" }, i.uid),
    h("td", { class: "num" }, i.settingsVersion),
    h("td", {}, i.settingsPending ? `to version ${i.settingsPending.targetVersion}` : "none"),
    h("td", { data: { field: "behind" } }, i.nodesBehindOnSettings.length === 0 ? "none" :
      i.nodesBehindOnSettings.map((b) => `${b.node} (at ${b.version === null ? "none" : b.version})`).join(", ")),
  )));
  const cp = fleet.controlPlane;
  $("#settings .counters").textContent = cp.reachable
    ? `Since the leader started: ${cp.settings.commits} settings changes committed, ${cp.settings.failures} failed, ${cp.settings.driftRepairs} drift repairs.`
    : "";
}

function drawGateways(fleet) {
  const cp = fleet.controlPlane;
  fill($("#gateways tbody"), (cp.reachable ? cp.gateways : []).map((g) => h("tr", { data: { gateway: g.id } },
    h("th", { scope: "row" }, g.id, g.id === fleet.gatewayId ? " (this one)" : ""),
    h("td", { class: "num" }, g.appliedVersion),
    h("td", { class: `num${g.lag > 0 ? " warn" : ""}` }, g.lag),
    h("td", {}, ago(g.lastHeartbeatMsAgo)),
    h("td", {}, g.connected ? "connected" : "not connected"),
    h("td", { class: "address" }, g.address),
  )));
  $("#gateways .control-planes").textContent = cp.reachable
    ? `Control planes: ${cp.controlPlanes.map((c) => `${c.id} (${c.role}, seen ${ago(c.lastSeenMsAgo)})`).join("; ")}. Store: ${cp.store}.`
    : "";
}

// Task throughput: tasks finished in the last minute (Meilisearch's own filters), and the
// newest uid's growth between polls for the rate they are enqueued at.
let lastNewest = null;

async function drawTasks() {
  const since = new Date(Date.now() - 60000).toISOString();
  const [newest, finished, queued, failed] = await Promise.all([
    get("/tasks?limit=1"),
    get(`/tasks?limit=1&statuses=succeeded,failed,canceled&afterFinishedAt=${encodeURIComponent(since)}`),
    get("/tasks?limit=1&statuses=enqueued,processing"),
    get("/tasks?limit=5&statuses=failed"),
  ]);
  const now = Date.now();
  const uid = newest.results.length ? newest.results[0].uid : -1;
  let rate = "";
  if (lastNewest && now > lastNewest.at) {
    rate = ` · ${((uid - lastNewest.uid) / ((now - lastNewest.at) / 1000)).toFixed(1)} enqueued/s`;
  }
  lastNewest = { uid, at: now };
  const p = $("#tasks .throughput");
  p.dataset.finished = finished.total;
  p.textContent = `${number(finished.total)} tasks finished in the last minute · ${number(queued.total)} enqueued or processing${rate}`;
  const rows = failed.results.map((t) => h("tr", { data: { task: t.uid } },
    h("th", { scope: "row", class: "num" }, t.uid),
    h("td", {}, t.indexUid || "—"),
    h("td", {}, t.type),
    h("td", { class: "error" }, t.error ? `${t.error.code}: ${t.error.message}` : ""),
    h("td", {}, t.finishedAt ? new Date(t.finishedAt).toLocaleString("en-GB") : "—"),
  ));
  fill($("#tasks tbody"), rows.length ? rows : [h("tr", {}, h("td", { colspan: 5 }, "No failed task."))]);
}

// ---- the loop -------------------------------------------------------------------------

function showLogin(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  $("#fleet").hidden = true;
  $("#sign-out").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#summary").replaceChildren();
  $("#key").focus();
}

let generation = 0;

// What each poll last failed with (cleared by its next success), shown above the fleet.
const failures = new Map();

function showFailures() {
  const banner = $("#poll-error");
  banner.hidden = failures.size === 0;
  banner.textContent = [...failures].map(([what, message]) => `Could not update ${what}: ${message}. Retrying.`).join(" ");
}

function poll(what, every, step) {
  const mine = generation;
  const run = async () => {
    if (mine !== generation) return;
    try {
      await step();
      failures.delete(what);
    } catch (error) {
      if (error instanceof AuthError) {
        generation++;
        failures.clear();
        showFailures();
        showLogin(error.message);
        return;
      }
      failures.set(what, error.message);
    }
    if (mine !== generation) return;
    showFailures();
    setTimeout(run, every);
  };
  run();
}

async function drawFleet() {
  const fleet = await get("/_miroir/ui/fleet");
  $("#login").hidden = true;
  $("#fleet").hidden = false;
  $("#sign-out").hidden = false;
  drawSummary(fleet);
  drawNodes(fleet);
  drawOperations(fleet);
  drawShardMap(fleet);
  drawSettings(fleet);
  drawGateways(fleet);
}

function start() {
  generation++;
  shardMapShown = "";
  lastNewest = null;
  poll("the fleet", FLEET_EVERY_MS, drawFleet);
  poll("the tasks", TASKS_EVERY_MS, drawTasks);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("#key").value);
    $("#key").value = "";
    $("#login-error").textContent = "";
    start();
  });
  $("#sign-out").addEventListener("click", () => {
    generation++;
    failures.clear();
    showFailures();
    showLogin("Signed out.");
  });
  if (sessionStorage.getItem(KEY_STORAGE)) start();
  else showLogin("");
});
