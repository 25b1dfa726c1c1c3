// One IRC connection over the IRCv3 WebSocket transport (subprotocol
// text.ircv3.net: one line per text message, no CRLF), kept up across drops.
//
// Owns: the WebSocket, registration (CAP LS 302 / REQ / END, SASL PLAIN), the
// server's ISUPPORT and enabled capabilities, PING/PONG, batches, and the
// reconnect schedule (1 s, 2 s, 4 s ... 30 s, reset once registered).
// Everything else is the application's: it listens to these events:
//   "state"      {state: "connecting"|"registering"|"connected"|"waiting"|"closed",
//                 delay (ms, when waiting), reason}
//   "registered" {nick, reconnect}       after 001
//   "ready"      {reconnect}             after the end of the MOTD (ISUPPORT known)
//   "nick-taken" {nick, reason}          before 001, on a first connection only
//   "message"    {msg, batch}            every line but PING and registration chatter;
//                                        batch: the chathistory batch it arrived in
//   "batch-end"  {batch}                 a chathistory batch has ended
//   "notice"     {text, error}           something to tell the user (SASL result, ...)

import { buildLine, folder, parseLine } from "./irc.js";

export const WANTED_CAPS = [
  "message-tags", "server-time", "echo-message", "batch", "labeled-response", "multi-prefix",
  "away-notify", "account-notify", "extended-join", "draft/chathistory", "draft/read-marker",
  "draft/event-playback", "chghost", "setname", "cap-notify",
];

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const IDLE_PING_MS = 60000; // silence before we PING the server
const DEAD_MS = 120000; // silence before we give the connection up

function base64Utf8(text) {
  let bin = "";
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin);
}

export class Connection extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.options = null;
    this.wanted = false; // stay connected (false after /quit)
    this.attempt = 0;
    this.everRegistered = false;
    this.reset();
  }

  reset() {
    this.registered = false;
    this.nick = this.options ? this.options.nick : "";
    this.available = new Map(); // cap -> value, from CAP LS
    this.caps = new Set(); // enabled
    this.capsDone = false;
    this.readySent = false;
    this.isupport = new Map();
    this.fold = folder("rfc1459");
    this.batches = new Map(); // ref -> {type, params}
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** options: {url, nick, account, password}. */
  start(options) {
    this.options = { ...options };
    this.wanted = true;
    this.attempt = 0;
    this.everRegistered = false;
    this.open();
  }

  open() {
    clearTimeout(this.retryTimer);
    if (this.ws) {
      const old = this.ws;
      this.ws = null; // its events are ignored from now on
      clearInterval(this.watchdog);
      old.close();
    }
    this.reset();
    this.emit("state", { state: "connecting" });
    let ws;
    try {
      ws = new WebSocket(this.options.url, ["text.ircv3.net"]);
    } catch (err) {
      this.emit("notice", { text: `Cannot connect to ${this.options.url}: ${err.message}`, error: true });
      this.scheduleRetry("invalid address");
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.emit("state", { state: "registering" });
      this.lastSeen = Date.now();
      this.watchdog = setInterval(() => this.checkAlive(), 10000);
      this.send("CAP LS 302");
      this.send(buildLine("NICK", this.nick));
      this.send(buildLine("USER", this.nick.slice(0, 10) || "web", "0", "*", "relaychat web client"));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastSeen = Date.now();
      if (typeof ev.data !== "string") return;
      for (const line of ev.data.split(/\r?\n/)) {
        const msg = line && parseLine(line);
        if (msg) this.receive(msg);
      }
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      clearInterval(this.watchdog);
      this.ws = null;
      const reason = this.closeReason || ev.reason
        || (ev.code === 1006 ? "connection lost" : "the server closed the connection");
      this.closeReason = "";
      if (this.wanted) this.scheduleRetry(reason);
      else this.emit("state", { state: "closed", reason });
    };
  }

  scheduleRetry(reason) {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.emit("state", { state: "waiting", delay, reason });
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  reconnectNow() {
    if (this.wanted && !this.ws) this.open();
  }

  checkAlive() {
    const quiet = Date.now() - this.lastSeen;
    if (quiet > DEAD_MS && this.ws) {
      this.closeReason = "no reply from the server";
      this.ws.close();
    } else if (quiet > IDLE_PING_MS) {
      this.send("PING :alive");
    }
  }

  /** Stop for good: QUIT, close, no reconnect. */
  quit(reason = "") {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      this.send(buildLine("QUIT", reason || "Leaving"));
      this.ws.close(1000);
    } else {
      this.emit("state", { state: "closed", reason: "quit" });
    }
  }

  get connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  send(line) {
    if (this.connected) this.ws.send(line);
  }

  sendCmd(command, ...params) {
    this.send(buildLine(command, ...params));
  }

  has(cap) {
    return this.caps.has(cap);
  }

  /** Try another nick while registering (after "nick-taken"). */
  tryNick(nick) {
    this.nick = nick;
    this.options.nick = nick;
    this.sendCmd("NICK", nick);
  }

  isChannel(name) {
    const types = this.isupport.get("CHANTYPES") ?? "#&";
    return !!name && types.includes(name[0]);
  }

  isMe(nick) {
    return !!nick && this.fold(nick) === this.fold(this.nick);
  }

  /** [[mode, prefix], ...] from PREFIX, highest first. */
  prefixes() {
    const m = /^\(([^)]*)\)(.*)$/.exec(this.isupport.get("PREFIX") ?? "(ov)@+");
    return m ? [...m[1]].map((mode, i) => [mode, m[2][i]]) : [];
  }

  receive(msg) {
    const ref = msg.tags.batch;
    const batch = ref ? this.batches.get(ref) : undefined;
    const handler = this.registrationHandlers[msg.command];
    if (handler && handler.call(this, msg) === true) return;
    if (msg.command === "BATCH") {
      const name = msg.params[0] || "";
      if (name.startsWith("+")) {
        this.batches.set(name.slice(1), { ref: name.slice(1), type: msg.params[1], params: msg.params.slice(2), count: 0 });
      } else if (name.startsWith("-")) {
        const done = this.batches.get(name.slice(1));
        this.batches.delete(name.slice(1));
        if (done && done.type === "chathistory") this.emit("batch-end", { batch: done });
      }
      return;
    }
    const history = batch && batch.type === "chathistory" ? batch : null;
    if (history) history.count += 1;
    this.emit("message", { msg, batch: history });
  }
}

// Lines the connection answers itself; a handler returning true swallows the line.
Connection.prototype.registrationHandlers = {
  PING(msg) {
    this.sendCmd("PONG", ...msg.params);
    return true;
  },
  PONG() {
    return true;
  },
  ERROR(msg) {
    this.closeReason = msg.params[0] || "";
    return false;
  },
  CAP(msg) {
    const sub = (msg.params[1] || "").toUpperCase();
    const more = msg.params.length > 3 && msg.params[2] === "*";
    const list = (msg.params[msg.params.length - 1] || "").split(" ").filter(Boolean);
    if (sub === "LS" || sub === "NEW") {
      for (const item of list) {
        const eq = item.indexOf("=");
        this.available.set(eq < 0 ? item : item.slice(0, eq), eq < 0 ? "" : item.slice(eq + 1));
      }
      if (more) return true;
      const want = WANTED_CAPS.filter((c) => this.available.has(c) && !this.caps.has(c));
      const sasl = this.available.has("sasl") && this.options.account && this.options.password
        && (this.available.get("sasl") === "" || this.available.get("sasl").split(",").includes("PLAIN"));
      if (sasl && !this.capsDone) want.push("sasl");
      if (want.length) this.sendCmd("CAP", "REQ", want.join(" "));
      else this.endCaps();
    } else if (sub === "ACK") {
      for (const cap of list) {
        if (cap.startsWith("-")) this.caps.delete(cap.slice(1));
        else this.caps.add(cap);
      }
      if (this.caps.has("sasl") && !this.capsDone && this.options.account) this.sendCmd("AUTHENTICATE", "PLAIN");
      else this.endCaps();
    } else if (sub === "NAK") {
      this.endCaps();
    } else if (sub === "DEL") {
      for (const cap of list) {
        this.caps.delete(cap);
        this.available.delete(cap);
      }
    }
    return true;
  },
  AUTHENTICATE(msg) {
    if (msg.params[0] !== "+") return true;
    const { account, password } = this.options;
    const payload = base64Utf8(`${account}\0${account}\0${password}`);
    for (let i = 0; i < payload.length; i += 400) this.sendCmd("AUTHENTICATE", payload.slice(i, i + 400));
    if (payload.length % 400 === 0) this.sendCmd("AUTHENTICATE", "+");
    return true;
  },
  "900"(msg) {
    this.emit("notice", { text: `Logged in as ${msg.params[2]}` });
    return true;
  },
  "903"() {
    this.endCaps();
    return true;
  },
  "904"(msg) {
    this.emit("notice", { text: `Login failed: ${msg.params[1] || "wrong account or password"}; continuing without an account`, error: true });
    this.endCaps();
    return true;
  },
  "001"(msg) {
    this.registered = true;
    this.nick = msg.params[0];
    const reconnect = this.everRegistered;
    this.everRegistered = true;
    this.reconnecting = reconnect;
    this.attempt = 0;
    this.emit("state", { state: "connected" });
    this.emit("registered", { nick: this.nick, reconnect });
    return false;
  },
  "005"(msg) {
    for (const token of msg.params.slice(1, -1)) {
      const eq = token.indexOf("=");
      if (token.startsWith("-")) this.isupport.delete(token.slice(1));
      else this.isupport.set(eq < 0 ? token : token.slice(0, eq), eq < 0 ? "" : token.slice(eq + 1));
    }
    this.fold = folder(this.isupport.get("CASEMAPPING"));
    return false;
  },
  "376"() {
    if (!this.readySent) this.emit("ready", { reconnect: this.reconnecting });
    this.readySent = true;
    return false;
  },
  "433"(msg) {
    return this.nickRefused(msg);
  },
  "432"(msg) {
    return this.nickRefused(msg);
  },
};
Connection.prototype.registrationHandlers["422"] = Connection.prototype.registrationHandlers["376"];
Connection.prototype.registrationHandlers["905"] = Connection.prototype.registrationHandlers["904"];
Connection.prototype.registrationHandlers["906"] = Connection.prototype.registrationHandlers["903"];
Connection.prototype.registrationHandlers["902"] = Connection.prototype.registrationHandlers["904"];

Connection.prototype.endCaps = function endCaps() {
  if (!this.capsDone) {
    this.capsDone = true;
    this.send("CAP END");
  }
};

Connection.prototype.nickRefused = function nickRefused(msg) {
  if (this.registered) return false; // a /nick that failed: the application says so
  const nick = msg.params[1] || this.nick;
  if (this.everRegistered) {
    // reconnecting: our old self may still be there; take a variant and carry on
    this.nick = nick.length < 15 ? nick + "_" : nick.slice(0, -1) + Math.floor(Math.random() * 10);
    this.sendCmd("NICK", this.nick);
  } else {
    this.emit("nick-taken", { nick, reason: msg.params[2] || "" });
  }
  return true;
};
