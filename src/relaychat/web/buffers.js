// Buffers (the server, a channel, a private conversation) and their lines.
//
// A buffer keeps its lines in order, each rendered once into its own <ol>;
// a msgid seen before is never shown twice (a reconnect's history fill, a
// scroll-back and live delivery may all bring the same message). Message text
// only ever reaches the page through textContent.

import { formatRuns } from "./irc.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function nickColour(nick) {
  let h = 0;
  for (const c of nick.toLowerCase()) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `nc${h % 8}`;
}

/** IRC-formatted text as spans (classes for styles and colours 0-15). */
export function formatted(text) {
  const frag = document.createDocumentFragment();
  for (const run of formatRuns(text)) {
    const cls = [];
    if (run.bold) cls.push("b");
    if (run.italic) cls.push("i");
    if (run.underline) cls.push("u");
    if (run.strike) cls.push("s");
    if (run.mono) cls.push("m");
    if (run.fg !== undefined && run.fg < 16) cls.push(`fg${run.fg}`);
    if (run.bg !== undefined && run.bg < 16) cls.push(`bg${run.bg}`);
    frag.append(cls.length ? el("span", { class: cls.join(" "), text: run.text }) : run.text);
  }
  return frag;
}

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

export class Buffer {
  constructor(name, kind, key) {
    this.name = name;
    this.kind = kind; // "server" | "channel" | "query"
    this.key = key; // folded name
    this.lines = []; // {time, msgid, node}, in time order
    this.msgids = new Set();
    this.unread = 0;
    this.mention = false;
    this.topic = "";
    this.members = new Map(); // folded nick -> {nick, prefix, away}
    this.joined = false;
    this.rejoin = false;
    this.namesDone = true;
    this.gapFrom = null; // {msgid, time}: newest line when the connection dropped
    this.exhausted = false; // no older history
    this.loading = false; // a CHATHISTORY BEFORE is out
    this.readMarker = 0;
    this.list = el("ol", { class: "lines" });
  }

  /** The newest line that the server can find again (by msgid, else by time). */
  newestRef() {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const line = this.lines[i];
      if (line.msgid || line.server) return { msgid: line.msgid, time: line.time };
    }
    return null;
  }

  oldestRef() {
    for (const line of this.lines) if (line.msgid || line.server) return { msgid: line.msgid, time: line.time };
    return null;
  }

  newestTime() {
    return this.lines.length ? this.lines[this.lines.length - 1].time : 0;
  }

  /** Where lines that follow `ref` ({msgid, time}) go. */
  indexAfter(ref) {
    if (!ref) return this.lines.length;
    const at = ref.msgid ? this.lines.findIndex((l) => l.msgid === ref.msgid) : -1;
    if (at >= 0) return at + 1;
    let i = this.lines.length;
    while (i > 0 && this.lines[i - 1].time > ref.time) i--;
    return i;
  }

  /**
   * Add a line: {time, msgid, server (time came from the server), kind, nick, text,
   * action, self, mention}. A live line goes at the end; a line of a history batch
   * at the batch's cursor (the top for BEFORE and LATEST, after the reference for
   * AFTER), and a line already shown moves the cursor past it, so that a batch
   * overlapping what is shown stays in order. Returns false for a msgid already shown.
   */
  add(line, batch = null) {
    if (line.msgid && this.msgids.has(line.msgid)) {
      if (batch) batch.cursor = this.lines.findIndex((l) => l.msgid === line.msgid) + 1;
      return false;
    }
    if (line.msgid) this.msgids.add(line.msgid);
    const node = this.render(line);
    let i = this.lines.length;
    if (batch) {
      i = Math.min(batch.cursor, i);
      batch.cursor = i + 1;
    }
    const entry = { time: line.time, msgid: line.msgid, server: line.server, node };
    if (i === this.lines.length) this.list.append(node);
    else this.list.insertBefore(node, this.lines[i].node);
    this.lines.splice(i, 0, entry);
    return true;
  }

  render(line) {
    const cls = ["line", `k-${line.kind}`];
    if (line.self) cls.push("self");
    if (line.mention) cls.push("mention");
    const node = el("li", { class: cls.join(" "), "data-msgid": line.msgid });
    node.append(el("time", { datetime: new Date(line.time).toISOString(), text: clock(line.time) }), " ");
    if (line.kind === "privmsg" || line.kind === "notice") {
      const who = line.action ? `* ${line.nick}` : line.kind === "notice" ? `-${line.nick}-` : `<${line.nick}>`;
      node.append(el("span", { class: `nick ${nickColour(line.nick)}`, text: who }), " ");
      node.append(el("span", { class: "text" }, formatted(line.text)));
    } else {
      node.append(el("span", { class: "text" }, formatted(line.text)));
    }
    return node;
  }

  /** Members sorted by rank (PREFIX order), then by nick. */
  sortedMembers(ranks) {
    const rank = (m) => (m.prefix ? ranks.indexOf(m.prefix[0]) : ranks.length);
    return [...this.members.values()].sort(
      (a, b) => rank(a) - rank(b) || a.nick.toLowerCase().localeCompare(b.nick.toLowerCase())
    );
  }
}
