// raftkv live view: polls /v1/debug/view on the member that served the
// page and redraws. Plain DOM, no framework, no build step: the file is
// embedded in the binary as written.
"use strict";

const POLL_MS = 1000;
const WINDOW = 64; // log entries drawn per member
const VIEW_URL = "../v1/debug/view?n=" + WINDOW;
// A browser whose first preferred language is Chinese gets the Chinese
// edition of the guide (both editions define the same section anchors).
const PREFERS_ZH = /^zh\b/i.test((navigator.languages && navigator.languages[0]) || navigator.language || "");
const GUIDE = (PREFERS_ZH && document.body.dataset.guideZh) || document.body.dataset.guide;
// The guide section that explains what a member in each role does.
const ROLE_GUIDE = PREFERS_ZH ? {
  leader: ["#log-replication", "指南：领导者做什么"],
  follower: ["#terms-and-roles", "指南：跟随者做什么"],
  candidate: ["#leader-election", "指南：选举如何进行"],
  learner: ["#log-replication", "指南：学习者如何追上进度"],
  removed: ["#terms-and-roles", "指南：关于角色"],
} : {
  leader: ["#log-replication", "Guide: what a leader does"],
  follower: ["#terms-and-roles", "Guide: what a follower does"],
  candidate: ["#leader-election", "Guide: how an election works"],
  learner: ["#log-replication", "Guide: how a learner catches up"],
  removed: ["#terms-and-roles", "Guide: about roles"],
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c);
  }
  return e;
}

// termColour spreads consecutive terms far apart on the colour wheel, so
// a new term stands out next to the previous one.
function termColour(term) {
  return `hsl(${(term * 137.508) % 360}, 62%, 52%)`;
}

function lagOf(view, m, hi) {
  const p = view.progress && view.progress[String(m.id)];
  if (m.id === view.leader) return 0;
  if (p) return p.lag;
  if (m.state) return Math.max(0, hi - m.state.last_index);
  return null;
}

function renderSummary(view) {
  $("cluster-id").textContent = view.cluster_id || "unknown";
  $("term").textContent = view.term;
  $("leader-id").textContent = view.leader ? view.leader : "none";
  $("member-count").textContent = view.members.length;
  $("self-id").textContent = view.self;
  document.body.dataset.leader = String(view.leader);
  document.body.dataset.members = String(view.members.length);
}

function renderMembership(view) {
  const box = $("membership");
  box.replaceChildren();
  for (const m of view.members) {
    const kind = m.voter ? "voter" : "learner";
    box.append(el("span", { class: "chip " + kind }, `${m.id} · ${kind}${m.id === view.leader ? " · leader" : ""}`));
  }
}

function row(dl, name, value) {
  dl.append(el("dt", {}, name), el("dd", {}, value === null || value === undefined ? "—" : String(value)));
}

function renderMembers(view) {
  const box = $("members");
  box.replaceChildren();
  for (const m of view.members) {
    const st = m.state;
    const role = st ? st.role : "unreachable";
    const isLeader = m.id === view.leader && st && st.role === "leader";
    const card = el("div", {
      class: "member" + (isLeader ? " is-leader" : "") + (st ? "" : " unreachable"),
      "data-id": String(m.id), "data-role": role, "data-leader": String(!!isLeader),
    });
    card.append(el("h3", {}, `member ${m.id}`, el("span", { class: "role " + role }, role),
      isLeader ? el("span", { class: "crown", title: "the leader" }, "★") : null,
      m.alarm ? el("span", { class: "alarm", "data-alarm": m.alarm,
        title: "writes may be refused; see docs/operations.md" }, `${m.alarm} (${m.alarm_cause || "?"})`) : null));
    const dl = el("dl");
    if (st) {
      const p = view.progress && view.progress[String(m.id)];
      row(dl, "term", st.term);
      row(dl, "commit", st.commit_index);
      row(dl, "applied", st.applied_index);
      row(dl, "last index", st.last_index);
      row(dl, "snapshot", st.snapshot_index);
      row(dl, "lag", lagOf(view, m, view.to));
      if (p && m.id !== view.leader) row(dl, "replication", `${p.state}, ${p.inflight} in flight`);
    } else if (view.progress && view.progress[String(m.id)]) {
      // Unreachable from here, but the leader still tracks it.
      const p = view.progress[String(m.id)];
      row(dl, "match", p.match);
      row(dl, "lag", p.lag);
      row(dl, "replication", `${p.state}, ${p.inflight} in flight`);
    }
    row(dl, "voter", m.voter ? "yes" : "no (learner)");
    card.append(dl);
    card.append(el("div", { class: "addr" }, `peer ${m.peer_addr || "?"} · client ${m.client_addr || "?"}`));
    if (m.error) card.append(el("div", { class: "err" }, m.error));
    const g = ROLE_GUIDE[role];
    if (g && GUIDE) card.append(el("a", { class: "guide", href: GUIDE + g[0], target: "_blank", rel: "noopener" }, `${g[1]} →`));
    box.append(card);
  }
}

function renderLogs(view) {
  const box = $("logs");
  box.replaceChildren();
  const from = view.from, to = view.to;
  const n = to >= from ? to - from + 1 : 0;
  $("window").textContent = n ? `entries ${from}–${to}` : "(empty)";
  const terms = new Set();
  for (const m of view.members) {
    const st = m.state;
    const strip = el("div", { class: "strip", style: `grid-template-columns: repeat(${Math.max(n, 1)}, 1fr)` });
    const byIndex = new Map();
    if (st) for (const e of st.entries || []) byIndex.set(e.index, e.term);
    for (let i = from; n && i <= to; i++) {
      const c = el("div", { class: "cell" });
      const t = byIndex.get(i);
      if (st && i < st.first_index) {
        c.classList.add("compacted");
        c.title = `index ${i}: in member ${m.id}'s snapshot`;
      } else if (t !== undefined) {
        terms.add(t);
        c.style.background = termColour(t);
        if (i > st.commit_index) c.classList.add("uncommitted");
        if (i === st.commit_index) c.classList.add("commit-edge");
        c.title = `index ${i}, term ${t}` + (i > st.commit_index ? " (not known committed)" : "");
      } else {
        c.title = `index ${i}: not in member ${m.id}'s log`;
      }
      strip.append(c);
    }
    const isLeader = m.id === view.leader;
    box.append(el("div", { class: "logrow" + (isLeader ? " leader" : ""), "data-id": String(m.id) },
      el("div", { class: "who" }, `${isLeader ? "★ " : ""}member ${m.id}`), strip));
  }
  if (n) box.append(el("div", { class: "axis" }, el("div"), el("div", {}, el("span", {}, String(from)), el("span", {}, String(to)))));
  const legend = $("legend");
  legend.replaceChildren();
  for (const t of [...terms].sort((a, b) => a - b)) {
    legend.append(el("span", { style: `--c: ${termColour(t)}` }, `term ${t}`));
  }
}

function render(view) {
  renderSummary(view);
  renderMembership(view);
  renderMembers(view);
  renderLogs(view);
}

function setStatus(ok, text) {
  const s = $("status");
  s.className = "status " + (ok ? "live" : "stale");
  s.textContent = text;
}

async function poll() {
  try {
    const resp = await fetch(VIEW_URL, { cache: "no-store" });
    if (!resp.ok) throw new Error(`answered ${resp.status}`);
    render(await resp.json());
    document.body.dataset.rendered = "true";
    setStatus(true, "live · " + new Date().toLocaleTimeString());
  } catch (err) {
    // Keep the last picture, marked stale: the member may be restarting.
    setStatus(false, "disconnected: " + err.message);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
