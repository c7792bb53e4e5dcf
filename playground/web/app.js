// The Raft playground page: it loads the WebAssembly module (cmd/playground),
// which runs the simulator's cluster, and draws what state() returns. All
// protocol behaviour comes from the module; this file only draws and
// forwards the learner's clicks as actions.
"use strict";
(function () {
  const TEXT = window.PLAYGROUND_TEXT, SCENES = window.PLAYGROUND_SCENES;
  const $ = (id) => document.getElementById(id);
  const SVGNS = "http://www.w3.org/2000/svg";
  const MAX_TICKS_PER_FRAME = 50, LOG_WINDOW = 40;

  let lang = pickLang();
  let api = null;
  let opts = { seed: 1, voters: 5 };
  let st = null;
  let playing = false, acc = 0, lastTs = 0, dirty = true;
  let selMember = 0, selMsg = 0, dragFrom = 0;
  let scene = null; // { name, stage, stages }
  let sceneList = [];
  let loadInfo = null;

  function pickLang() {
    const q = new URLSearchParams(location.search).get("lang");
    if (q === "zh" || q === "en") return q;
    try {
      const saved = localStorage.getItem("raftkv-playground-lang");
      if (saved === "zh" || saved === "en") return saved;
    } catch (e) { /* storage may be off */ }
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    return String(langs[0]).toLowerCase().startsWith("zh") ? "zh" : "en";
  }

  function t(key, vars) {
    let s = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;
    if (vars) for (const k in vars) s = s.split("{" + k + "}").join(String(vars[k]));
    return s;
  }

  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
    if (api) fillMutations();
    $("lang").textContent = t("lang");
    document.title = t("title") + " · raftkv";
    fillScenes();
    dirty = true;
  }

  function setStatus(msg) {
    $("status").className = "";
    $("status").textContent = msg ? t("error", { text: msg }) : "";
  }

  function setInfo(msg) {
    $("status").className = "info";
    $("status").textContent = msg;
  }

  // A link in the address stands for the run it replayed; once the run
  // starts over, it no longer does.
  function dropLink() {
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  }

  // ---- loading -----------------------------------------------------------
  async function load() {
    $("loadinfo").textContent = t("loading");
    const t0 = performance.now();
    let bytes;
    try {
      const resp = await fetch("raftkv.wasm");
      if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
      bytes = await resp.arrayBuffer();
    } catch (e) {
      $("status").textContent = t("noWasm");
      $("loadinfo").textContent = "raftkv.wasm: " + e.message;
      document.body.dataset.ready = "nowasm";
      return;
    }
    const go = new Go();
    try {
      const { instance } = await WebAssembly.instantiate(bytes, go.importObject);
      go.run(instance); // main installs window.raftkvPlayground, then waits
    } catch (e) {
      $("status").textContent = "WebAssembly: " + e.message;
      document.body.dataset.ready = "failed";
      return;
    }
    api = window.raftkvPlayground;
    loadInfo = { ms: Math.round(performance.now() - t0), bytes: bytes.byteLength };
    window.raftkvPlaygroundLoad = loadInfo;
    init();
  }

  function init() {
    sceneList = JSON.parse(api.scenes(1));
    applyLang();
    if (!restoreLink()) {
      resetCluster(readForm());
      // ?scene=figure8 opens a scene at its first stage.
      const want = new URLSearchParams(location.search).get("scene");
      if (want && sceneList.some((s) => s.name === want)) startScene(want);
    }
    wire();
    document.body.dataset.ready = "1";
    requestAnimationFrame(frame);
  }

  // ---- cluster -----------------------------------------------------------
  function readForm() {
    return {
      seed: Math.max(1, parseInt($("seed").value, 10) || 1),
      voters: parseInt($("voters").value, 10),
      spares: parseInt($("spares").value, 10) || 0,
      nopv: !$("prevote").checked,
      nocq: !$("checkquorum").checked,
    };
  }

  function writeForm(o) {
    $("seed").value = o.seed;
    $("voters").value = o.voters;
    $("spares").value = o.spares || 0;
    $("prevote").checked = !o.nopv;
    $("checkquorum").checked = !o.nocq;
  }

  function resetCluster(o) {
    const err = api.reset(o);
    if (err) { setStatus(err); return false; }
    opts = o;
    writeForm(o);
    selMember = 0; selMsg = 0; acc = 0;
    setStatus("");
    refresh();
    return true;
  }

  function act(a) {
    const err = api.act(a);
    setStatus(err || "");
    refresh();
    return err;
  }

  function refresh() {
    st = JSON.parse(api.state());
    if (selMsg && !st.messages.some((m) => m.id === selMsg)) selMsg = 0;
    dirty = true;
    render();
  }

  // ---- scenes ------------------------------------------------------------
  function fillScenes() {
    const sel = $("scene");
    const cur = sel.value;
    sel.innerHTML = "";
    const none = document.createElement("option");
    none.value = ""; none.textContent = t("none");
    sel.appendChild(none);
    for (const sc of sceneList) {
      const o = document.createElement("option");
      o.value = sc.name;
      o.textContent = SCENES[lang][sc.name][0];
      sel.appendChild(o);
    }
    sel.value = scene ? scene.name : cur;
    renderNarration();
  }

  function startScene(name) {
    const sc = sceneList.find((s) => s.name === name);
    if (!sc) return "no scene " + name;
    const o = Object.assign({}, sc.options, { seed: readForm().seed });
    if (!resetCluster(o)) return "reset failed";
    scene = { name, stage: -1, stages: sc.stages };
    $("scene").value = name;
    return nextStage();
  }

  function nextStage() {
    if (!scene || scene.stage + 1 >= scene.stages) return "no next stage";
    playing = false;
    scene.stage++;
    const err = act({ op: "stage", scene: scene.name, n: scene.stage });
    if (st.violation) setStatus(""); // the checks say what stopped the run
    noteSceneFacts();
    renderNarration();
    return err;
  }

  // The narration quotes terms as they were when the stage ran: {term:N}
  // is server N's term, {t3:N} the term of its entry at index 3.
  function noteSceneFacts() {
    if (!scene || !st) return;
    scene.facts = {};
    for (const m of st.members) {
      scene.facts["term:" + m.id] = m.term;
      const c = (m.log || []).find((e) => e.i === 3);
      scene.facts["t3:" + m.id] = c ? c.t : "?";
    }
  }

  function renderNarration() {
    const box = $("narration");
    if (!scene) { box.hidden = true; return; }
    box.hidden = false;
    const [title, stages] = SCENES[lang][scene.name];
    $("narration-title").textContent = title + "  (" + (scene.stage + 1) + "/" + scene.stages + ")";
    let said = scene.stage >= 0 ? stages[scene.stage] : "";
    said = said.replace(/\{(term|t3):(\d)\}/g, (all, k, id) => (scene.facts && scene.facts[k + ":" + id]) || "?");
    $("narration-text").textContent = said;
    $("scene-next").disabled = scene.stage + 1 >= scene.stages;
    if (scene.stage + 1 >= scene.stages) $("narration-text").textContent += "  " + t("sceneDone");
  }

  // replay applies recorded actions. One recorded with an error (an
  // "until" that ran out of time) repeats it; it is shown, not fatal.
  function replay(actions) {
    let first = "";
    for (const a of actions) {
      const err = api.act(a);
      if (err && !first) first = err;
    }
    setStatus(first);
  }

  // undo replays every action but the last on a fresh cluster (a run of
  // steps or ticks counts as one action).
  function undo() {
    const actions = JSON.parse(api.actions());
    if (actions.length === 0) return;
    const last = actions.pop();
    if (!resetCluster(opts)) return;
    replay(actions);
    if (scene && last.op === "stage") scene.stage = Math.max(-1, scene.stage - 1);
    refresh();
    noteSceneFacts();
    renderNarration();
  }

  // ---- links: seed and actions in the address ------------------------------
  function linkFor() {
    const data = { o: opts, a: JSON.parse(api.actions()) };
    if (scene) data.sc = { n: scene.name, s: scene.stage };
    const b64 = btoa(unescape(encodeURIComponent(JSON.stringify(data))))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return location.href.split("#")[0] + "#r=" + b64;
  }

  function restoreLink() {
    const m = /#r=([A-Za-z0-9_-]+)/.exec(location.hash);
    if (!m) return false;
    let data;
    try {
      let b = m[1].replace(/-/g, "+").replace(/_/g, "/");
      while (b.length % 4) b += "=";
      data = JSON.parse(decodeURIComponent(escape(atob(b))));
    } catch (e) {
      setStatus("bad link: " + e.message);
      return false;
    }
    if (!resetCluster(data.o)) return false;
    replay(data.a || []);
    if (data.sc && sceneList.some((s) => s.name === data.sc.n)) {
      scene = { name: data.sc.n, stage: data.sc.s, stages: sceneList.find((s) => s.name === data.sc.n).stages };
      $("scene").value = scene.name;
    }
    refresh();
    noteSceneFacts();
    renderNarration();
    return true;
  }

  // ---- drawing -----------------------------------------------------------
  const ROLE_FILL = { leader: "#f6ad55", follower: "#e2e8f0", candidate: "#faf089", precandidate: "#fefcbf",
    learner: "#c6f6d5", removed: "#f7fafc", down: "#eeeeee" };
  const MSG_FILL = { AppendEntries: "#4299e1", AppendEntriesResp: "#4299e1", Heartbeat: "#a0aec0", HeartbeatResp: "#a0aec0",
    RequestVote: "#ed8936", RequestVoteResp: "#ed8936", PreVote: "#ecc94b", PreVoteResp: "#ecc94b",
    InstallSnapshot: "#805ad5", TimeoutNow: "#e53e3e" };
  const MSG_ABBR = { AppendEntries: "AE", Heartbeat: "HB", RequestVote: "RV", PreVote: "PV", InstallSnapshot: "IS",
    TimeoutNow: "TN", ReadIndex: "RI" };

  function termColor(term) { return "hsl(" + ((term * 67) % 360) + ",70%,80%)"; }

  function center(id, n) {
    const a = -Math.PI / 2 + (2 * Math.PI * (id - 1)) / n;
    return [280 + 190 * Math.cos(a), 254 + 185 * Math.sin(a)];
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function text(parent, x, y, s, attrs) {
    const e = el("text", Object.assign({ x, y, "text-anchor": "middle" }, attrs || {}), parent);
    e.textContent = s;
    return e;
  }

  function render() {
    if (!st || !dirty) return;
    dirty = false;
    renderRing();
    renderPanel();
    renderChecks();
    renderLogs();
    $("clock").textContent = t("time", { now: st.now, events: st.events, e: st.election_ticks, e2: 2 * st.election_ticks - 1 });
    $("play").textContent = playing ? t("pause") : t("play");
    $("loadinfo").textContent = loadInfo ? t("loaded", { mb: (loadInfo.bytes / 1e6).toFixed(1), ms: loadInfo.ms }) : "";
  }

  function renderRing() {
    const svg = $("ring");
    svg.innerHTML = "";
    const n = st.members.length;
    const cut = new Set(st.cut.map((c) => c[0] + ">" + c[1]));
    for (let a = 1; a <= n; a++) {
      for (let b = a + 1; b <= n; b++) {
        const [x1, y1] = center(a, n), [x2, y2] = center(b, n);
        const ab = cut.has(a + ">" + b), ba = cut.has(b + ">" + a);
        const cls = ab && ba ? "link cut" : ab || ba ? "link oneway" : "link";
        const line = el("line", { x1, y1, x2, y2, class: cls, "data-a": a, "data-b": b }, svg);
        el("title", {}, line).textContent = "S" + a + " — S" + b;
        line.addEventListener("click", () => act({ op: ab || ba ? "heal" : "cut", id: a, to: b }));
      }
    }
    const now = st.now + (playing ? acc : 0);
    for (const m of st.messages) {
      const [x1, y1] = center(m.from, n), [x2, y2] = center(m.to, n);
      const span = Math.max(1, m.at - m.sent);
      const f = Math.min(1, Math.max(0, (now - m.sent) / span));
      const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1;
      const ox = (-dy / len) * 7, oy = (dx / len) * 7; // the two directions travel side by side
      const x = x1 + dx * (0.12 + 0.76 * f) + ox, y = y1 + dy * (0.12 + 0.76 * f) + oy;
      const resp = m.type.endsWith("Resp");
      const g = el("g", { class: "msgg", "data-id": m.id }, svg);
      el("circle", { cx: x, cy: y, r: 10, fill: MSG_FILL[m.type] || "#718096",
        class: "msg" + (resp ? " resp" : "") + (m.id === selMsg ? " selected" : "") }, g);
      const abbr = resp ? (m.reject ? "✗" : "✓") : (MSG_ABBR[m.type] || "?");
      text(g, x, y + 4, abbr, { "font-size": 10, "font-weight": 700 });
      if (!resp && m.type !== "Heartbeat") {
        // Kind, term and index at a glance: t3 on every request, #5 on
        // AppendEntries (the first entry it carries) and InstallSnapshot.
        let label = "t" + m.term;
        if (m.type === "AppendEntries" && m.entries) label += " #" + (m.index + 1) + (m.entries > 1 ? "+" : "");
        if (m.type === "InstallSnapshot") label += " ≤" + m.index;
        text(g, x, y - 13, label, { "font-size": 9, fill: "#333" });
      }
      el("title", {}, g).textContent = msgText(m);
      g.addEventListener("click", (ev) => { ev.stopPropagation(); selMsg = m.id; selMember = 0; dirty = true; render(); });
    }
    for (const m of st.members) {
      const [x, y] = center(m.id, n);
      const cls = "server " + m.role + (m.id === selMember ? " selected" : "");
      const g = el("g", { class: cls, "data-id": m.id, "data-role": m.role, "data-term": m.term }, svg);
      if (m.up && m.role !== "leader" && m.timeout > 0) {
        const c = 2 * Math.PI * 42, frac = Math.min(1, m.elapsed / m.timeout);
        el("circle", { cx: x, cy: y, r: 42, class: "timer", "stroke-dasharray": c * frac + " " + c,
          transform: "rotate(-90 " + x + " " + y + ")" }, g);
      }
      el("circle", { cx: x, cy: y, r: 34, class: "body", fill: ROLE_FILL[m.role] || "#fff" }, g);
      text(g, x, y - 10, "S" + m.id, { "font-size": 15, "font-weight": 700 });
      text(g, x, y + 6, t(m.role), { "font-size": 10 });
      text(g, x, y + 20, t("term") + " " + m.term, { "font-size": 10 });
      const below = (m.vote ? t("vote") + "→S" + m.vote + "  " : "") + (m.value ? "x=" + m.value : "");
      if (below) text(g, x, y + 52, below, { "font-size": 10, fill: "#555" });
      if (!m.up) text(g, x + 26, y - 24, "✕", { "font-size": 18, fill: "#c53030" });
      g.addEventListener("click", (ev) => { ev.stopPropagation(); selMember = m.id; selMsg = 0; dirty = true; render(); });
      // Dragging from one server to another cuts (or heals) their link.
      g.addEventListener("mousedown", (ev) => { dragFrom = m.id; ev.preventDefault(); });
      g.addEventListener("mouseup", (ev) => {
        const from = dragFrom;
        dragFrom = 0;
        if (from && from !== m.id) {
          const linked = !cut.has(from + ">" + m.id) && !cut.has(m.id + ">" + from);
          // With Shift held, only the direction dragged is cut.
          act(linked ? { op: "cut", id: from, to: m.id, oneway: ev.shiftKey } : { op: "heal", id: from, to: m.id });
        }
      });
    }
    if (st.leader) {
      const lead = st.members[st.leader - 1];
      text(svg, 280, 505, confText(lead.conf), { "font-size": 12, fill: "#555" });
    }
    // Legend of message kinds.
    let lx = 14;
    for (const k of ["AppendEntries", "Heartbeat", "RequestVote", "PreVote", "InstallSnapshot", "TimeoutNow"]) {
      el("circle", { cx: lx + 6, cy: 11, r: 6, fill: MSG_FILL[k], class: "msg" }, svg);
      const e = text(svg, lx + 15, 14, MSG_ABBR[k] + " " + k, { "font-size": 9, "text-anchor": "start", fill: "#555" });
      lx += 22 + e.getComputedTextLength();
    }
  }

  function msgText(m) {
    let s = t("message", { id: m.id, type: m.type, from: m.from, to: m.to, term: m.term });
    if (m.type === "AppendEntries") s += ", prev " + m.index + "/" + m.log_term + ", " + m.entries + " entries, commit " + m.commit;
    else if (m.type === "InstallSnapshot") s += ", snapshot " + m.index + "/" + m.log_term;
    else if (m.type.endsWith("Resp")) s += m.reject ? ", rejected" : ", ok" + (m.index ? " " + m.index : "");
    else if (m.type === "RequestVote" || m.type === "PreVote") s += ", last " + m.index + "/" + m.log_term;
    return s;
  }

  function ids(xs) { return "{" + (xs || []).map((x) => "S" + x).join(", ") + "}"; }

  function confText(c) {
    if (!c || !c.voters) return "";
    let s = c.outgoing && c.outgoing.length
      ? t("joint") + ": " + t("cnew") + " " + ids(c.voters) + " " + t("cold") + " " + ids(c.outgoing)
      : t("conf") + " " + ids(c.voters);
    if (c.learners && c.learners.length) s += " · " + t("learners") + " " + ids(c.learners);
    return s;
  }

  function button(parent, key, onclick, vars) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = t(key, vars);
    b.dataset.act = key;
    b.addEventListener("click", onclick);
    parent.appendChild(b);
    return b;
  }

  function renderPanel() {
    const p = $("panel");
    p.innerHTML = "";
    $("whatif-body").innerHTML = "";
    const msg = selMsg && st.messages.find((m) => m.id === selMsg);
    if (msg) {
      const h = document.createElement("h3");
      h.textContent = msgText(msg);
      p.appendChild(h);
      const row = document.createElement("div");
      row.className = "actions";
      button(row, "drop", () => act({ op: "drop", msg: msg.id }));
      button(row, "dup", () => act({ op: "dup", msg: msg.id }));
      p.appendChild(row);
      return;
    }
    const m = selMember && st.members[selMember - 1];
    if (!m) {
      const h = document.createElement("h3");
      h.textContent = confText(st.leader ? st.members[st.leader - 1].conf : null) || t("selectHint");
      p.appendChild(h);
      const row = document.createElement("div");
      row.className = "actions";
      button(row, "propose", () => act({ op: "propose", n: 1 }));
      button(row, "burst", () => act({ op: "propose", n: 5 }));
      button(row, "healAll", () => act({ op: "heal" }));
      p.appendChild(row);
      votersBox(p);
      return;
    }
    const h = document.createElement("h3");
    h.textContent = t("member", { id: m.id }) + " · " + t(m.role);
    p.appendChild(h);
    const kv = document.createElement("div");
    kv.className = "kv";
    const rows = [[t("term"), m.term], [t("vote"), m.vote ? "S" + m.vote : "—"],
      [t("timer"), m.up ? m.elapsed + " / " + m.timeout : "—"], [t("commit"), m.commit], [t("applied"), m.applied],
      [t("snapshot"), m.snapshot + " (" + t("log") + " > " + m.log_start + ")"], [t("log"), "… " + m.last],
      [t("conf"), confText(m.conf)], [t("value"), m.value || "—"]];
    if (m.match) {
      // The leader's view of each member's log (Figure 2: matchIndex).
      rows.push([t("match"), Object.keys(m.match).sort((a, b) => a - b).map((id) => "S" + id + " " + m.match[id]).join(", ")]);
    }
    for (const [k, v] of rows) {
      const a = document.createElement("span"); a.textContent = k;
      const b = document.createElement("span"); b.textContent = v;
      kv.appendChild(a); kv.appendChild(b);
    }
    p.appendChild(kv);
    const row = document.createElement("div");
    row.className = "actions";
    if (m.up) button(row, "crash", () => act({ op: "crash", id: m.id }));
    else button(row, "restart", () => act({ op: "restart", id: m.id }));
    button(row, "timeout", () => act({ op: "timeout", id: m.id }));
    button(row, "propose", () => act({ op: "propose", id: m.id, n: 1 }));
    button(row, "burst", () => act({ op: "propose", id: m.id, n: 5 }));
    button(row, "takeSnapshot", () => act({ op: "snapshot", id: m.id }));
    button(row, "transfer", () => act({ op: "transfer", id: m.id }));
    button(row, "isolate", () => act({ op: "isolate", id: m.id }));
    button(row, "addLearner", () => act({ op: "learner", id: m.id }));
    button(row, "promote", () => act({ op: "promote", id: m.id }));
    button(row, "remove", () => act({ op: "remove", id: m.id }));
    p.appendChild(row);
    votersBox(p);
    const wb = $("whatif-body");
    if (!m.up) {
      button(wb, "amnesia", () => act({ op: "amnesia", id: m.id }));
      button(wb, "lostLog", () => act({ op: "amnesia", id: m.id, what: "log" }));
    }
  }

  function votersBox(p) {
    const box = document.createElement("div");
    box.className = "voters";
    const cur = st.leader ? st.members[st.leader - 1].conf.voters : [];
    for (const m of st.members) {
      const l = document.createElement("label");
      const c = document.createElement("input");
      c.type = "checkbox"; c.value = m.id; c.checked = cur.includes(m.id);
      l.appendChild(c);
      l.appendChild(document.createTextNode(" S" + m.id + "  "));
      box.appendChild(l);
    }
    button(box, "changeVoters", () => {
      const chosen = [...box.querySelectorAll("input:checked")].map((c) => parseInt(c.value, 10));
      act({ op: "voters", ids: chosen });
    });
    p.appendChild(box);
  }

  // The what-if menu's list of the core's named bugs, filled once.
  function fillMutations() {
    const names = JSON.parse(api.mutations ? api.mutations() : "[]");
    const box = $("whatif-mutations");
    box.innerHTML = "";
    if (names.length === 0) return;
    const label = document.createElement("label");
    label.textContent = t("mutation") + " ";
    const sel = document.createElement("select");
    sel.id = "mutation";
    for (const n of ["none"].concat(names)) {
      const o = document.createElement("option");
      o.value = n;
      o.textContent = t("mut-" + n);
      sel.appendChild(o);
    }
    sel.addEventListener("change", () => act({ op: "mutate", what: sel.value }));
    label.appendChild(sel);
    box.appendChild(label);
  }

  function renderChecks() {
    const c = $("checks");
    c.innerHTML = "";
    const h = document.createElement("h4");
    h.textContent = t("checks");
    c.appendChild(h);
    const ul = document.createElement("ul");
    for (const k of st.checks) {
      const li = document.createElement("li");
      li.className = k.ok ? "ok" : "bad";
      li.dataset.check = k.name;
      li.textContent = t(k.name);
      ul.appendChild(li);
    }
    c.appendChild(ul);
    if (st.mutation) {
      const v = document.createElement("div");
      v.className = "mutation";
      v.textContent = t("mutationOn", { name: t("mut-" + st.mutation) });
      c.appendChild(v);
    }
    const sel = $("mutation");
    if (sel && document.activeElement !== sel) sel.value = st.mutation || "none";
    if (st.violation) {
      const v = document.createElement("div");
      v.className = "violation";
      v.textContent = t("violation", { text: st.violation });
      c.appendChild(v);
    }
  }

  function renderLogs() {
    const tbl = $("logtable");
    tbl.innerHTML = "";
    let hi = 0;
    for (const m of st.members) hi = Math.max(hi, m.last);
    const lo = Math.max(1, hi - LOG_WINDOW + 1);
    const head = document.createElement("tr");
    head.appendChild(document.createElement("th"));
    for (let i = lo; i <= hi; i++) {
      const th = document.createElement("th");
      th.textContent = i;
      head.appendChild(th);
    }
    tbl.appendChild(head);
    for (const m of st.members) {
      const tr = document.createElement("tr");
      tr.className = m.up ? "" : "down";
      tr.dataset.id = m.id;
      const who = document.createElement("td");
      who.className = "who";
      who.textContent = "S" + m.id + " " + t(m.role);
      tr.appendChild(who);
      const byIndex = new Map((m.log || []).map((c) => [c.i, c]));
      for (let i = lo; i <= hi; i++) {
        const td = document.createElement("td");
        const c = byIndex.get(i);
        if (c) {
          td.className = "cell" + (i <= m.commit ? " committed" : "") + (i === m.applied ? " applied" : "") + (c.k === "conf" ? " conf" : "");
          td.style.background = termColor(c.t);
          td.textContent = c.t;
          td.title = t("log") + " " + i + ", " + t("term") + " " + c.t + (c.x ? ", " + c.x : c.k === "noop" ? ", no-op" : "");
        } else if (i <= m.log_start) {
          td.className = "cell snap";
          td.title = t("snapshot") + " " + m.log_start;
        } else {
          td.className = "empty";
        }
        tr.appendChild(td);
      }
      const conf = document.createElement("td");
      conf.className = "conf-col";
      conf.textContent = t("commit") + " " + m.commit + " · " + t("applied") + " " + m.applied;
      const leadConf = st.leader ? JSON.stringify(st.members[st.leader - 1].conf) : "";
      if (m.up && leadConf && JSON.stringify(m.conf) !== leadConf) conf.textContent += " · " + confText(m.conf);
      tr.appendChild(conf);
      tbl.appendChild(tr);
    }
  }

  // ---- loop and controls -------------------------------------------------
  function frame(ts) {
    const dt = lastTs ? Math.min(250, ts - lastTs) : 0;
    lastTs = ts;
    if (playing && st && !st.violation) {
      acc += (dt / 1000) * parseInt($("speed").value, 10);
      const whole = Math.min(MAX_TICKS_PER_FRAME, Math.floor(acc));
      if (whole > 0) {
        acc -= whole;
        const err = api.run(whole);
        if (err) { playing = false; setStatus(err); }
        st = JSON.parse(api.state());
      }
      dirty = true;
    }
    render();
    requestAnimationFrame(frame);
  }

  function wire() {
    $("lang").addEventListener("click", () => {
      lang = lang === "zh" ? "en" : "zh";
      try { localStorage.setItem("raftkv-playground-lang", lang); } catch (e) { /* ignore */ }
      applyLang();
      render();
    });
    $("reset").addEventListener("click", () => { dropLink(); scene = null; renderNarration(); resetCluster(readForm()); $("scene").value = ""; });
    for (const id of ["prevote", "checkquorum", "voters", "spares"]) {
      $(id).addEventListener("change", () => { dropLink(); scene = null; renderNarration(); resetCluster(readForm()); $("scene").value = ""; });
    }
    $("play").addEventListener("click", () => { playing = !playing; dirty = true; render(); });
    $("step").addEventListener("click", () => { playing = false; acc = 0; setStatus(api.step(1) || ""); refresh(); });
    $("tick").addEventListener("click", () => { playing = false; acc = 0; setStatus(api.run(1) || ""); refresh(); });
    $("undo").addEventListener("click", () => { playing = false; undo(); });
    $("link").addEventListener("click", () => {
      history.replaceState(null, "", linkFor());
      setInfo(t("linkSaved"));
    });
    $("scene-start").addEventListener("click", () => { if ($("scene").value) { dropLink(); startScene($("scene").value); } });
    $("scene-next").addEventListener("click", () => nextStage());
    $("ring").addEventListener("click", () => { selMember = 0; selMsg = 0; dirty = true; render(); });
    document.addEventListener("keydown", (ev) => {
      if (/^(INPUT|SELECT|TEXTAREA)$/.test(ev.target.tagName) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const keys = { " ": "play", ArrowRight: "step", t: "tick", n: "scene-next" };
      const id = keys[ev.key];
      if (id && !$(id).disabled && !(id === "scene-next" && $("narration").hidden)) {
        ev.preventDefault();
        $(id).click();
      }
    });
  }

  // For tests and the curious: the page's own controls, as functions.
  window.playgroundUI = {
    startScene, nextStage, link: linkFor, refresh, undo,
    reset: (o) => { scene = null; renderNarration(); return resetCluster(Object.assign({}, opts, o)); },
    lang: () => lang,
    select: (id) => { selMember = id; selMsg = 0; dirty = true; render(); },
  };

  load();
})();
