// The relaychat browser client: wires the connection, the buffers and the page.
//
// State lives in `app` (buffers by folded name, the active one, the LIST results);
// the page is rendered from it. Lines that arrive inside a chathistory batch only
// add lines (they never change members or topics: those are the live state's).

import { Buffer, el } from "./buffers.js";
import { runInput } from "./commands.js";
import { Connection } from "./connection.js";
import { formatTime, parseCtcp, parseTime, stripFormatting } from "./irc.js";

const HISTORY_PAGE = 50; // lines per CHATHISTORY BEFORE / LATEST
const HISTORY_FILL = 100; // lines per CHATHISTORY AFTER (a reconnect's gap)
const $ = (id) => document.getElementById(id);

export const app = {
  conn: new Connection(),
  buffers: new Map(),
  active: null,
  server: null,
  away: false,
  switchTo: new Set(), // folded channels to show once joined (the user asked)
  pending: new Map(), // folded target -> [{kind, ref} of each CHATHISTORY sent]
  listing: null,
  initialJoin: [],
  inputHistory: [],
  historyPos: 0,
};
window.relaychat = app; // for the console (and tests)

// ---------------------------------------------------------------- buffers

function key(name) {
  return app.conn.fold(name);
}

export function getBuffer(name, kind, create = true) {
  const k = kind === "server" ? "\0server" : key(name);
  let buf = app.buffers.get(k);
  if (!buf && create) {
    buf = new Buffer(name, kind, k);
    app.buffers.set(k, buf);
    renderBufferList();
  }
  return buf;
}

function orderedBuffers() {
  const rank = { server: 0, channel: 1, query: 2 };
  return [...app.buffers.values()].sort(
    (a, b) => rank[a.kind] - rank[b.kind] || a.key.localeCompare(b.key)
  );
}

export function activate(buf, focusInput = true) {
  if (!buf) return;
  const log = $("log");
  app.active = buf;
  buf.unread = 0;
  buf.mention = false;
  for (const node of log.querySelectorAll("ol.lines")) node.remove();
  log.append(buf.list);
  log.scrollTop = log.scrollHeight;
  renderBufferList();
  renderHeader();
  renderMembers();
  markRead(buf);
  document.body.classList.remove("sidebar-open");
  $("toggle-buffers").setAttribute("aria-expanded", "false");
  if (focusInput) $("input").focus();
}

function closeBuffer(buf) {
  if (buf.kind === "server") return;
  app.buffers.delete(buf.key);
  if (app.active === buf) activate(app.server);
  else renderBufferList();
}
app.closeBuffer = closeBuffer;

function cycle(step) {
  const list = orderedBuffers();
  const i = list.indexOf(app.active);
  activate(list[(i + step + list.length) % list.length]);
}

/**
 * Add a line to a buffer, counting it as unread and notifying as it deserves.
 * batch: the chathistory batch it came in (its cursor says where it goes).
 */
function addLine(buf, line, { count = true, batch = null } = {}) {
  const log = $("log");
  const shown = app.active === buf;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  if (batch && batch.cursor === undefined) {
    const request = (app.pending.get(buf.key) || [])[0];
    batch.request = request;
    batch.cursor = request && request.kind === "after" ? buf.indexAfter(request.ref) : 0;
  }
  const height = log.scrollHeight;
  if (batch) batch.last = { msgid: line.msgid, time: line.time }; // where a next page starts
  if (!buf.add(line, batch)) return false;
  // a history line above what is on screen: keep the screen where it was
  if (shown && batch && !atBottom) log.scrollTop += log.scrollHeight - height;
  const visible = shown && !document.hidden;
  if (count && !line.self && (line.kind === "privmsg" || line.kind === "notice")) {
    if (!shown) {
      buf.unread += 1;
      if (line.mention || buf.kind === "query") buf.mention = true;
      renderBufferList();
    }
    if ((line.mention || buf.kind === "query") && !visible) notify(buf, line);
  }
  if (shown && atBottom) log.scrollTop = log.scrollHeight;
  if (visible) markRead(buf);
  return true;
}

/** A line of our own making (errors, states): now, no msgid. */
export function info(buf, text, kind = "info") {
  addLine(buf || app.active || app.server, { time: Date.now(), kind, text }, { count: false });
}

export function errorLine(text) {
  info(app.active || app.server, text, "error");
}

function markRead(buf) {
  if (!app.conn.has("draft/read-marker") || buf.kind === "server") return;
  const ref = buf.newestRef();
  if (!ref || ref.time <= buf.readMarker || document.hidden) return;
  buf.readMarker = ref.time;
  app.conn.sendCmd("MARKREAD", buf.name, `timestamp=${formatTime(ref.time)}`);
}

function notify(buf, line) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const n = new Notification(buf.kind === "query" ? line.nick : `${line.nick} in ${buf.name}`, {
      body: stripFormatting(line.text).slice(0, 200),
      tag: buf.key,
    });
    n.onclick = () => {
      window.focus();
      activate(buf);
    };
  } catch {
    // some browsers only allow notifications from a service worker
  }
}

// ---------------------------------------------------------------- rendering

function renderBufferList() {
  const ul = $("buffer-list");
  ul.replaceChildren();
  for (const buf of orderedBuffers()) {
    const label = buf.kind === "server" ? "Server" : buf.name;
    const button = el("button", {
      type: "button",
      class: `buffer k-${buf.kind}${buf.joined || buf.kind !== "channel" ? "" : " parted"}`,
      "data-name": buf.name,
      "aria-current": app.active === buf ? "page" : undefined,
    }, el("span", { class: "name", text: label }));
    if (buf.unread) {
      button.append(el("span", {
        class: `unread${buf.mention ? " mention" : ""}`,
        text: String(buf.unread),
        "aria-label": `${buf.unread} unread`,
      }));
    }
    button.addEventListener("click", () => activate(buf));
    ul.append(el("li", {}, button));
  }
  const total = [...app.buffers.values()].reduce((n, b) => n + b.unread, 0);
  document.title = total ? `(${total}) relaychat` : "relaychat";
}

function renderHeader() {
  const buf = app.active;
  if (!buf) return;
  $("buffer-title").textContent = buf.kind === "server" ? "Server" : buf.name;
  $("topic").textContent = stripFormatting(buf.topic || "");
  $("topic").hidden = !buf.topic;
  $("me").textContent = app.conn.nick + (app.away ? " (away)" : "");
  $("me").classList.toggle("away", app.away);
  $("older-button").hidden = buf.kind === "server" || buf.exhausted || !app.conn.has("draft/chathistory");
  document.body.classList.toggle("no-members", buf.kind !== "channel");
}

function renderMembers() {
  const buf = app.active;
  const ul = $("member-list");
  ul.replaceChildren();
  if (!buf || buf.kind !== "channel") {
    $("member-count").textContent = "";
    return;
  }
  const ranks = app.conn.prefixes().map(([, p]) => p).join("");
  for (const m of buf.sortedMembers(ranks)) {
    const open = el("button", { type: "button", class: "nick-button", title: `Talk to ${m.nick}` }, m.nick);
    open.addEventListener("click", () => openQuery(m.nick));
    const li = el("li", { class: m.away ? "member away" : "member", "data-nick": m.nick },
      el("span", { class: "prefix", text: m.prefix }), open);
    if (m.away) li.title = "away";
    ul.append(li);
  }
  $("member-count").textContent = `(${buf.members.size})`;
}

function refreshIfActive(buf) {
  if (app.active === buf) {
    renderHeader();
    renderMembers();
  }
}

let countdown = null;
function setStatus(text, { error = false, reconnect = false } = {}) {
  $("status-text").textContent = text;
  $("status").classList.toggle("error", error);
  $("status").hidden = !text;
  $("reconnect-button").hidden = !reconnect;
}

// ---------------------------------------------------------------- history

function requestHistory(buf, kind, ref) {
  if (!app.conn.has("draft/chathistory") || buf.kind === "server") return;
  const queue = app.pending.get(buf.key) || [];
  queue.push({ kind, ref });
  app.pending.set(buf.key, queue);
  const refText = !ref ? "*" : ref.msgid ? `msgid=${ref.msgid}` : `timestamp=${formatTime(ref.time)}`;
  const sub = { latest: "LATEST", before: "BEFORE", after: "AFTER" }[kind];
  app.conn.sendCmd("CHATHISTORY", sub, buf.name, refText, kind === "after" ? HISTORY_FILL : HISTORY_PAGE);
}

function loadOlder(buf) {
  if (!buf || buf.loading || buf.exhausted || buf.kind === "server") return;
  const ref = buf.oldestRef();
  buf.loading = true;
  requestHistory(buf, ref ? "before" : "latest", ref);
}

/** After a (re)join or a reconnect: fill what we missed, or show recent lines. */
function catchUp(buf) {
  if (!app.conn.has("draft/chathistory")) {
    if (buf.gapFrom) info(buf, "Reconnected; this server keeps no history, lines sent meanwhile are missing.");
    buf.gapFrom = null;
    return;
  }
  if (buf.gapFrom) {
    requestHistory(buf, "after", buf.gapFrom);
    buf.gapFrom = null;
  } else if (buf.fresh || !buf.newestRef()) {
    buf.fresh = false;
    buf.loading = true;
    requestHistory(buf, "latest", null);
  }
}

function historyEnded(batch) {
  const target = batch.params[0] || "";
  const buf = app.buffers.get(key(target));
  const queue = app.pending.get(key(target)) || [];
  const kind = queue.shift()?.kind;
  if (!buf) return;
  if (kind === "before" || kind === "latest") {
    buf.loading = false;
    if (batch.count < HISTORY_PAGE) buf.exhausted = true;
    refreshIfActive(buf);
  } else if (kind === "after" && batch.count >= HISTORY_FILL && batch.last) {
    requestHistory(buf, "after", batch.last); // more missed lines than one page
  }
}

// ---------------------------------------------------------------- messages

function lineTime(msg) {
  const t = parseTime(msg.tags.time);
  return Number.isNaN(t) ? { time: Date.now(), server: false } : { time: t, server: true };
}

/** The buffer a history line belongs to: its batch's target. */
function historyBuffer(batch) {
  const target = batch.params[0] || "";
  return getBuffer(target, app.conn.isChannel(target) ? "channel" : "query");
}

function isMention(text) {
  const nick = app.conn.nick;
  if (!nick) return false;
  const escaped = nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|[^\\w\\[\\]\\\\^{}|\`-])${escaped}($|[^\\w\\[\\]\\\\^{}|\`-])`, "i").test(stripFormatting(text));
}

function event(buf, msg, batch, text, kind = "event") {
  const { time, server } = lineTime(msg);
  addLine(buf, { time, server, msgid: msg.tags.msgid, kind, text }, { count: false, batch });
}

function channelsWith(nick) {
  const k = key(nick);
  return [...app.buffers.values()].filter((b) => b.kind === "channel" && b.members.has(k));
}

function parsePrefixed(word) {
  const symbols = app.conn.prefixes().map(([, p]) => p).join("");
  let i = 0;
  while (i < word.length && symbols.includes(word[i])) i++;
  return { prefix: word.slice(0, i), nick: word.slice(i).split("!")[0] };
}

function setPrefix(member, symbol, on) {
  const order = app.conn.prefixes().map(([, p]) => p);
  const set = new Set(member.prefix);
  if (on) set.add(symbol);
  else set.delete(symbol);
  member.prefix = order.filter((p) => set.has(p)).join("");
}

const handlers = {
  PRIVMSG: message,
  NOTICE: message,
  JOIN(msg, batch) {
    const chan = msg.params[0];
    if (batch) return event(historyBuffer(batch), msg, batch, `→ ${msg.nick} joined`);
    const buf = getBuffer(chan, "channel");
    if (app.conn.isMe(msg.nick)) {
      buf.fresh = !buf.newestRef(); // nothing shown yet: the latest history will be
      buf.joined = true;
      buf.rejoin = false;
      buf.members.clear();
      buf.namesDone = false;
      renderBufferList();
      if (app.switchTo.delete(key(chan))) activate(buf);
    }
    buf.members.set(key(msg.nick), { nick: msg.nick, prefix: "", away: false });
    event(buf, msg, batch, `→ ${msg.nick} joined`);
    refreshIfActive(buf);
  },
  PART(msg, batch) {
    const chan = msg.params[0];
    const why = msg.params[1] ? ` (${msg.params[1]})` : "";
    if (batch) return event(historyBuffer(batch), msg, batch, `← ${msg.nick} left${why}`);
    const buf = getBuffer(chan, "channel", false);
    if (!buf) return;
    event(buf, msg, batch, `← ${msg.nick} left${why}`);
    if (app.conn.isMe(msg.nick)) {
      buf.joined = false;
      buf.members.clear();
      renderBufferList();
    } else buf.members.delete(key(msg.nick));
    refreshIfActive(buf);
  },
  KICK(msg, batch) {
    const [chan, nick, reason = ""] = msg.params;
    const text = `${nick} was kicked by ${msg.nick}${reason ? ` (${reason})` : ""}`;
    if (batch) return event(historyBuffer(batch), msg, batch, text);
    const buf = getBuffer(chan, "channel", false);
    if (!buf) return;
    event(buf, msg, batch, text);
    if (app.conn.isMe(nick)) {
      buf.joined = false;
      buf.members.clear();
      renderBufferList();
    } else buf.members.delete(key(nick));
    refreshIfActive(buf);
  },
  QUIT(msg, batch) {
    const text = `← ${msg.nick} quit${msg.params[0] ? ` (${msg.params[0]})` : ""}`;
    if (batch) return event(historyBuffer(batch), msg, batch, text);
    for (const buf of channelsWith(msg.nick)) {
      buf.members.delete(key(msg.nick));
      event(buf, msg, batch, text);
      refreshIfActive(buf);
    }
    const query = getBuffer(msg.nick, "query", false);
    if (query && query.kind === "query") event(query, msg, batch, text);
  },
  NICK(msg, batch) {
    const nick = msg.params[0];
    const text = `${msg.nick} is now known as ${nick}`;
    if (batch) return event(historyBuffer(batch), msg, batch, text);
    const me = app.conn.isMe(msg.nick);
    const oldKey = key(msg.nick);
    if (me) app.conn.nick = nick;
    for (const buf of channelsWith(msg.nick)) {
      const member = buf.members.get(oldKey);
      buf.members.delete(oldKey);
      buf.members.set(key(nick), { ...member, nick });
      event(buf, msg, batch, text);
      refreshIfActive(buf);
    }
    const query = app.buffers.get(oldKey);
    if (query && query.kind === "query" && !app.buffers.has(key(nick))) {
      app.buffers.delete(oldKey);
      query.name = nick;
      query.key = key(nick);
      app.buffers.set(query.key, query);
      event(query, msg, batch, text);
      renderBufferList();
      refreshIfActive(query);
    }
    if (me) {
      info(app.server, `You are now known as ${nick}`);
      renderHeader();
    }
  },
  TOPIC(msg, batch) {
    const [chan, topic = ""] = msg.params;
    const text = topic ? `${msg.nick} changed the topic to: ${topic}` : `${msg.nick} cleared the topic`;
    if (batch) return event(historyBuffer(batch), msg, batch, text);
    const buf = getBuffer(chan, "channel");
    buf.topic = topic;
    event(buf, msg, batch, text);
    refreshIfActive(buf);
  },
  MODE(msg, batch) {
    const [target, modes = "", ...args] = msg.params;
    const text = `${msg.nick} sets mode ${[modes, ...args].join(" ")}`;
    if (!app.conn.isChannel(target)) return info(app.server, `Your modes: ${[modes, ...args].join(" ")}`);
    if (batch) return event(historyBuffer(batch), msg, batch, text);
    const buf = getBuffer(target, "channel");
    const prefixOf = new Map(app.conn.prefixes());
    const [listModes = "", alwaysArg = "", setArg = ""] = (app.conn.isupport.get("CHANMODES") || "beI,k,l,imnst").split(",");
    let on = true;
    for (const c of modes) {
      if (c === "+" || c === "-") {
        on = c === "+";
        continue;
      }
      if (prefixOf.has(c)) {
        const member = buf.members.get(key(args.shift() || ""));
        if (member) setPrefix(member, prefixOf.get(c), on);
      } else if (listModes.includes(c) || alwaysArg.includes(c) || (on && setArg.includes(c))) {
        args.shift();
      }
    }
    event(buf, msg, batch, text);
    refreshIfActive(buf);
  },
  AWAY(msg) {
    for (const buf of channelsWith(msg.nick)) {
      buf.members.get(key(msg.nick)).away = msg.params.length > 0;
      refreshIfActive(buf);
    }
  },
  MARKREAD(msg) {
    const [target, ref = ""] = msg.params;
    const buf = app.buffers.get(key(target));
    const t = parseTime(ref.replace(/^timestamp=/, ""));
    if (!buf || Number.isNaN(t)) return;
    buf.readMarker = Math.max(buf.readMarker, t);
    if (buf.newestTime() <= t && buf.unread) {
      buf.unread = 0;
      buf.mention = false;
      renderBufferList();
    }
  },
  ERROR(msg) {
    info(app.server, `Server closed the connection: ${msg.params[0] || ""}`, "error");
    if (app.active !== app.server) info(app.active, `Disconnected: ${msg.params[0] || ""}`, "error");
  },
  FAIL: standardReply,
  WARN: standardReply,
  NOTE: standardReply,
  CHGHOST() {},
  ACCOUNT() {},
  SETNAME() {},
  TAGMSG() {},
  BATCH() {},
  CAP() {},
  // numerics
  "001"(msg) {
    info(app.server, msg.params.slice(1).join(" "));
  },
  "301"(msg) {
    const buf = app.buffers.get(key(msg.params[1])) || app.active;
    info(buf, `${msg.params[1]} is away: ${msg.params[2] || ""}`);
  },
  "305"(msg) {
    app.away = false;
    renderHeader();
    info(app.active, msg.params[1] || "You are no longer marked as away");
  },
  "306"(msg) {
    app.away = true;
    renderHeader();
    info(app.active, msg.params[1] || "You have been marked as away");
  },
  "321"() {},
  "322"(msg) {
    if (!app.listing) app.listing = [];
    app.listing.push({ name: msg.params[1], users: Number(msg.params[2]) || 0, topic: msg.params[3] || "" });
  },
  "323"() {
    renderListing(app.listing || []);
    app.listing = null;
  },
  "331"(msg) {
    const buf = getBuffer(msg.params[1], "channel", false);
    if (buf) {
      buf.topic = "";
      refreshIfActive(buf);
    }
  },
  "332"(msg) {
    const buf = getBuffer(msg.params[1], "channel");
    buf.topic = msg.params[2] || "";
    info(buf, `Topic: ${buf.topic}`);
    refreshIfActive(buf);
  },
  "333"() {},
  "353"(msg) {
    const buf = getBuffer(msg.params[2], "channel", false);
    if (!buf) return;
    if (buf.namesDone) {
      buf.members.clear();
      buf.namesDone = false;
    }
    for (const word of (msg.params[3] || "").split(" ").filter(Boolean)) {
      const { prefix, nick } = parsePrefixed(word);
      const old = buf.members.get(key(nick));
      buf.members.set(key(nick), { nick, prefix, away: old ? old.away : false });
    }
  },
  "366"(msg) {
    const buf = getBuffer(msg.params[1], "channel", false);
    if (!buf) return;
    const first = !buf.namesDone;
    buf.namesDone = true;
    refreshIfActive(buf);
    if (first && buf.joined && !buf.caughtUp) {
      buf.caughtUp = true;
      catchUp(buf);
    }
  },
  "433"(msg) {
    errorLine(`The nick ${msg.params[1]} is already in use; choose another with /nick`);
  },
  "432"(msg) {
    errorLine(`${msg.params[1]} is not a valid nick: ${msg.params[2] || ""}`);
  },
};

function standardReply(msg, batch) {
  const [command, code, ...rest] = msg.params;
  const description = rest[rest.length - 1] || "";
  if (command === "CHATHISTORY") {
    // e.g. a conversation with a service: no history to show, nothing to tell
    for (const buf of app.buffers.values()) buf.loading = false;
    app.pending.clear();
    info(app.server, `History unavailable: ${description} (${code})`);
    return;
  }
  if (command === "MARKREAD" && msg.command !== "FAIL") return;
  info(app.active, `${msg.command === "FAIL" ? "Error" : msg.command}: ${description} (${command} ${code})`,
    msg.command === "FAIL" ? "error" : "info");
}

function message(msg, batch) {
  const [target = "", raw = ""] = msg.params;
  const conn = app.conn;
  const fromServer = !msg.nick || (msg.nick.includes(".") && !msg.source.includes("!")) || !conn.registered;
  const statusmsg = conn.isupport.get("STATUSMSG") || "";
  const bare = statusmsg.includes(target[0]) && conn.isChannel(target.slice(1)) ? target.slice(1) : target;
  const self = conn.isMe(msg.nick);
  const ctcp = parseCtcp(raw);
  if (ctcp && ctcp.command !== "ACTION") {
    if (!batch && msg.command === "PRIVMSG" && !self) info(app.server, `CTCP ${ctcp.command} from ${msg.nick}`);
    return;
  }
  let buf;
  if (batch) buf = historyBuffer(batch);
  else if (fromServer && !conn.isChannel(bare)) buf = app.server;
  else if (conn.isChannel(bare)) buf = getBuffer(bare, "channel");
  else if (self) buf = getBuffer(bare, "query");
  else if (msg.command === "NOTICE" && !app.buffers.has(key(msg.nick))) buf = app.active || app.server;
  else buf = getBuffer(msg.nick, "query");
  const text = ctcp ? ctcp.text : raw;
  const { time, server } = lineTime(msg);
  addLine(buf, {
    time, server, msgid: msg.tags.msgid, kind: msg.command.toLowerCase(), nick: msg.nick || msg.source || "server",
    text, action: !!ctcp, self, mention: !self && !fromServer && isMention(text),
  }, { count: !batch || app.pending.get(buf.key)?.[0]?.kind === "after", batch });
}

function renderListing(items) {
  const filter = $("list-filter").value.trim().toLowerCase();
  const ul = $("list-results");
  ul.replaceChildren();
  const shown = items
    .filter((c) => !filter || c.name.toLowerCase().includes(filter) || c.topic.toLowerCase().includes(filter))
    .sort((a, b) => b.users - a.users || a.name.localeCompare(b.name));
  for (const c of shown) {
    const button = el("button", { type: "button", class: "join", "data-channel": c.name }, `Join ${c.name}`);
    button.addEventListener("click", () => {
      $("list-dialog").close();
      joinChannel(c.name);
    });
    ul.append(el("li", {}, button, el("span", { class: "users", text: `${c.users} users` }),
      el("span", { class: "topic", text: stripFormatting(c.topic) })));
  }
  app.lastListing = items;
  $("list-status").textContent = items.length ? `${shown.length} of ${items.length} channels` : "No channels yet: /join #name makes one.";
}

export function openChannelList(filter = "") {
  $("list-filter").value = filter;
  $("list-results").replaceChildren();
  $("list-status").textContent = "Loading…";
  $("list-dialog").showModal();
  app.conn.sendCmd("LIST");
}

export function joinChannel(names, keys) {
  for (const name of names.split(",").filter(Boolean)) {
    const buf = app.buffers.get(key(name));
    if (buf && buf.joined) activate(buf);
    else app.switchTo.add(key(name));
  }
  if (keys) app.conn.sendCmd("JOIN", names, keys);
  else app.conn.sendCmd("JOIN", names);
}

export function openQuery(nick) {
  const fresh = !app.buffers.has(key(nick));
  const buf = getBuffer(nick, "query");
  if (fresh) catchUp(buf);
  activate(buf);
  return buf;
}

/** Send a PRIVMSG or NOTICE; shown at once only when the server will not echo it. */
export function say(target, text, { command = "PRIVMSG", action = false } = {}) {
  const conn = app.conn;
  for (const part of splitText(text)) {
    conn.sendCmd(command, target, action ? `\x01ACTION ${part}\x01` : part);
    if (!conn.has("echo-message")) {
      const buf = conn.isChannel(target) ? getBuffer(target, "channel") : getBuffer(target, "query");
      addLine(buf, { time: Date.now(), kind: command.toLowerCase(), nick: conn.nick, text: part, action, self: true });
    }
  }
}

function splitText(text) {
  const out = [];
  const encoder = new TextEncoder();
  for (let line of text.split(/\r?\n/)) {
    while (encoder.encode(line).length > 400) {
      let cut = 400;
      while (encoder.encode(line.slice(0, cut)).length > 400) cut -= 10;
      const space = line.lastIndexOf(" ", cut);
      if (space > cut / 2) cut = space;
      out.push(line.slice(0, cut));
      line = line.slice(cut).replace(/^ /, "");
    }
    if (line) out.push(line);
  }
  return out;
}

// ---------------------------------------------------------------- connection events

const conn = app.conn;

conn.addEventListener("message", (ev) => {
  const { msg, batch } = ev.detail;
  const handler = handlers[msg.command];
  if (handler) handler(msg, batch);
  else if (/^\d{3}$/.test(msg.command)) numeric(msg);
  else info(app.server, `${msg.command} ${msg.params.join(" ")}`);
});

function numeric(msg) {
  const text = msg.params.slice(1).join(" ");
  const code = Number(msg.command);
  if (code >= 400 && code < 600) errorLine(text);
  else info(app.server, text);
}

conn.addEventListener("batch-end", (ev) => historyEnded(ev.detail.batch));

conn.addEventListener("notice", (ev) => {
  info(app.server, ev.detail.text, ev.detail.error ? "error" : "info");
  if (ev.detail.error && !$("chat-view").hidden) errorLine(ev.detail.text);
  if (ev.detail.error && $("chat-view").hidden) $("connect-error").textContent = ev.detail.text;
});

conn.addEventListener("nick-taken", (ev) => {
  showConnect();
  const nickField = $("nick");
  $("connect-error").textContent = `The nick “${ev.detail.nick}” is already in use or not allowed. Choose another.`;
  $("connect-button").textContent = "Use this nick";
  app.nickRetry = true;
  nickField.focus();
  nickField.select();
});

conn.addEventListener("registered", (ev) => {
  if (!ev.detail.reconnect) showChat();
  renderHeader();
  for (const buf of app.buffers.values()) buf.caughtUp = false;
});

conn.addEventListener("ready", (ev) => {
  const rejoin = [...app.buffers.values()].filter((b) => b.kind === "channel" && b.rejoin).map((b) => b.name);
  if (!ev.detail.reconnect) rejoin.push(...app.initialJoin);
  if (rejoin.length) {
    if (!ev.detail.reconnect) for (const name of app.initialJoin) app.switchTo.add(key(name));
    conn.sendCmd("JOIN", [...new Set(rejoin)].join(","));
  }
  for (const buf of app.buffers.values()) if (buf.kind === "query") catchUp(buf);
  if (app.away) conn.sendCmd("AWAY", app.awayMessage || "away");
  if (ev.detail.reconnect) info(app.server, "Reconnected");
});

conn.addEventListener("state", (ev) => {
  const { state, delay, reason } = ev.detail;
  clearInterval(countdown);
  if (state === "waiting") {
    for (const buf of app.buffers.values()) {
      if (buf.kind === "channel" && buf.joined) buf.rejoin = true;
      buf.joined = false;
      if (!buf.gapFrom) buf.gapFrom = buf.newestRef();
      buf.loading = false;
    }
    app.pending.clear();
    renderBufferList();
    if (!conn.everRegistered) {
      $("connect-error").textContent = `Cannot reach the server (${reason}); retrying in ${Math.round(delay / 1000)} s…`;
    }
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setStatus(`Connection lost (${reason}). Reconnecting in ${left} s…`, { error: true, reconnect: true });
    };
    tick();
    countdown = setInterval(tick, 1000);
    if (conn.everRegistered) info(app.server, `Disconnected: ${reason}`, "error");
  } else if (state === "connecting" || state === "registering") {
    setStatus(conn.everRegistered ? "Reconnecting…" : "Connecting…");
  } else if (state === "connected") {
    setStatus("");
  } else if (state === "closed") {
    setStatus(`Disconnected${reason && reason !== "quit" ? ` (${reason})` : ""}.`, { error: reason !== "quit" });
    showConnect();
  }
});

// ---------------------------------------------------------------- views

function defaultServer() {
  const param = new URLSearchParams(location.search).get("server");
  if (param) return param;
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host || "localhost"}/`;
}

function showConnect() {
  $("chat-view").hidden = true;
  $("connect-view").hidden = false;
}

function showChat() {
  $("connect-view").hidden = true;
  $("chat-view").hidden = false;
  $("connect-button").textContent = "Connect";
  $("connect-error").textContent = "";
  activate(app.active && app.buffers.has(app.active.key) ? app.active : app.server);
}

function connectSubmit(ev) {
  ev.preventDefault();
  const nick = $("nick").value.trim();
  if (!/^[^\s#&:,*?!@.0-9-][^\s,*?!@.]*$/.test(nick)) {
    $("connect-error").textContent = "Please enter a nick: letters, digits and -[]\\`^{}|_, not starting with a digit.";
    $("nick").focus();
    return;
  }
  if (app.nickRetry && conn.ws) {
    app.nickRetry = false;
    $("connect-error").textContent = "";
    conn.tryNick(nick);
    return;
  }
  const url = $("server").value.trim() || defaultServer();
  try {
    localStorage.setItem("relaychat.nick", nick);
    localStorage.setItem("relaychat.account", $("account").value.trim());
  } catch {
    // storage may be unavailable (private mode)
  }
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
  app.initialJoin = $("join").value.split(/[\s,]+/).filter(Boolean).map((c) => (/^[#&]/.test(c) ? c : `#${c}`));
  app.buffers.clear();
  app.server = getBuffer("Server", "server");
  app.active = app.server;
  app.away = false;
  $("connect-error").textContent = "";
  conn.start({ url, nick, account: $("account").value.trim(), password: $("password").value });
}

const THEMES = ["auto", "light", "dark"];
function applyTheme(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("theme-button").textContent = `Theme: ${theme}`;
  $("theme-button").setAttribute("aria-label", `Theme: ${theme} (change)`);
  try {
    localStorage.setItem("relaychat.theme", theme);
  } catch {
    // ignore
  }
}

function openSwitcher() {
  const dialog = $("switch-dialog");
  const names = $("switch-names");
  names.replaceChildren(...orderedBuffers().filter((b) => b.kind !== "server").map((b) => el("option", { value: b.name })));
  $("switch-input").value = "";
  dialog.showModal();
  $("switch-input").focus();
}

function setup() {
  let stored = {};
  try {
    stored = { nick: localStorage.getItem("relaychat.nick"), account: localStorage.getItem("relaychat.account"), theme: localStorage.getItem("relaychat.theme") };
  } catch {
    // ignore
  }
  const params = new URLSearchParams(location.search);
  $("nick").value = params.get("nick") || stored.nick || "";
  $("account").value = stored.account || "";
  $("join").value = params.get("join") || "";
  $("server").value = defaultServer();
  applyTheme(THEMES.includes(stored.theme) ? stored.theme : "auto");
  $("connect-form").addEventListener("submit", connectSubmit);
  $("theme-button").addEventListener("click", () => {
    const now = document.documentElement.dataset.theme || "auto";
    applyTheme(THEMES[(THEMES.indexOf(now) + 1) % THEMES.length]);
  });
  $("input-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("input");
    const text = input.value;
    if (!text.trim()) return;
    app.inputHistory.push(text);
    app.historyPos = app.inputHistory.length;
    input.value = "";
    runInput(text);
  });
  $("input").addEventListener("keydown", inputKeys);
  $("reconnect-button").addEventListener("click", () => conn.reconnectNow());
  $("older-button").addEventListener("click", () => loadOlder(app.active));
  $("log").addEventListener("scroll", () => {
    if ($("log").scrollTop < 30) loadOlder(app.active);
  });
  $("list-button").addEventListener("click", () => openChannelList());
  $("list-filter").addEventListener("input", () => renderListing(app.lastListing || []));
  $("list-dialog").addEventListener("close", () => $("input").focus());
  $("toggle-buffers").addEventListener("click", () => {
    const open = document.body.classList.toggle("sidebar-open");
    $("toggle-buffers").setAttribute("aria-expanded", String(open));
    if (open) document.querySelector("#buffer-list button[aria-current]")?.focus();
  });
  $("toggle-members").addEventListener("click", () => {
    const hidden = document.body.classList.toggle("members-hidden");
    $("toggle-members").setAttribute("aria-expanded", String(!hidden));
  });
  $("switch-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("switch-input").value.trim();
    $("switch-dialog").close();
    const buf = app.buffers.get(key(name)) || orderedBuffers().find((b) => b.key.startsWith(key(name)));
    if (buf) activate(buf);
    else if (name) (conn.isChannel(name) ? joinChannel(name) : openQuery(name));
  });
  $("switch-dialog").addEventListener("close", () => $("input").focus());
  document.addEventListener("keydown", (ev) => {
    if ($("chat-view").hidden) return;
    if (ev.altKey && (ev.key === "ArrowUp" || ev.key === "ArrowDown")) {
      ev.preventDefault();
      cycle(ev.key === "ArrowUp" ? -1 : 1);
    } else if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "k") {
      ev.preventDefault();
      openSwitcher();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && app.active) markRead(app.active);
  });
  if (matchMedia("(max-width: 700px)").matches) document.body.classList.add("members-hidden");
  $("nick").focus();
}

function inputKeys(ev) {
  const input = ev.target;
  if (ev.key === "ArrowUp" && !ev.altKey && app.historyPos > 0) {
    ev.preventDefault();
    input.value = app.inputHistory[--app.historyPos];
  } else if (ev.key === "ArrowDown" && !ev.altKey && app.historyPos < app.inputHistory.length) {
    ev.preventDefault();
    app.historyPos += 1;
    input.value = app.inputHistory[app.historyPos] || "";
  } else if (ev.key === "Tab" && input.value && app.active?.kind === "channel") {
    const upto = input.value.slice(0, input.selectionStart);
    const word = /\S*$/.exec(upto)[0];
    if (!word) return;
    const match = [...app.active.members.values()].map((m) => m.nick).find((n) => n.toLowerCase().startsWith(word.toLowerCase()));
    if (!match) return;
    ev.preventDefault();
    const completed = upto.slice(0, upto.length - word.length) + match + (upto.length === word.length ? ": " : " ");
    input.value = completed + input.value.slice(input.selectionStart);
    input.setSelectionRange(completed.length, completed.length);
  }
}

setup();
