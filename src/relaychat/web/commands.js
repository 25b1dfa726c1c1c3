// What the user types: plain text goes to the active buffer, "/command args"
// runs one of COMMANDS ("//text" sends "/text" as it is).

import { app, errorLine, info, joinChannel, openChannelList, openQuery, say } from "./app.js";

function activeTarget() {
  const buf = app.active;
  return buf && buf.kind !== "server" ? buf.name : null;
}

function needTarget() {
  const target = activeTarget();
  if (!target) errorLine("This is the server buffer: join a channel (/join #name) or open a query (/msg nick text).");
  return target;
}

function channelArg(args) {
  if (args[0] && app.conn.isChannel(args[0])) return args.shift();
  const buf = app.active;
  return buf && buf.kind === "channel" ? buf.name : null;
}

// name -> [usage, run(args, rest)]; rest: the text after the command word
export const COMMANDS = {
  join: ["/join #channel[,#other] [key]", (args) => {
    if (!args[0]) return errorLine("Usage: /join #channel");
    const names = args[0].split(",").map((c) => (app.conn.isChannel(c) ? c : `#${c}`)).join(",");
    joinChannel(names, args[1]);
  }],
  part: ["/part [#channel] [reason]", (args) => {
    const chan = channelArg(args);
    if (!chan) return errorLine("Usage: /part #channel [reason]");
    app.conn.sendCmd("PART", chan, ...(args.length ? [args.join(" ")] : []));
  }],
  msg: ["/msg nick|#channel text", (args) => {
    const [target, ...words] = args;
    if (!target || !words.length) return errorLine("Usage: /msg nick text");
    if (!app.conn.isChannel(target)) openQuery(target);
    say(target, words.join(" "));
  }],
  query: ["/query nick [text]", (args) => {
    const [nick, ...words] = args;
    if (!nick || app.conn.isChannel(nick)) return errorLine("Usage: /query nick [text]");
    openQuery(nick);
    if (words.length) say(nick, words.join(" "));
  }],
  notice: ["/notice target text", (args) => {
    const [target, ...words] = args;
    if (!target || !words.length) return errorLine("Usage: /notice target text");
    say(target, words.join(" "), { command: "NOTICE" });
  }],
  me: ["/me action", (args, rest) => {
    const target = needTarget();
    if (target && rest) say(target, rest, { action: true });
  }],
  nick: ["/nick newnick", (args) => {
    if (!args[0]) return errorLine("Usage: /nick newnick");
    app.conn.sendCmd("NICK", args[0]);
  }],
  topic: ["/topic [text]", (args) => {
    const chan = channelArg(args);
    if (!chan) return errorLine("Usage: /topic [#channel] [text] (in a channel)");
    const text = args.join(" ");
    if (text) app.conn.sendCmd("TOPIC", chan, text);
    else app.conn.sendCmd("TOPIC", chan);
  }],
  away: ["/away [message] (no message: back)", (args, rest) => {
    app.awayMessage = rest;
    if (rest) app.conn.sendCmd("AWAY", rest);
    else app.conn.sendCmd("AWAY");
  }],
  quit: ["/quit [message]", (args, rest) => app.conn.quit(rest)],
  quote: ["/quote RAW LINE", (args, rest) => {
    if (!rest) return errorLine("Usage: /quote COMMAND params");
    app.conn.send(rest);
  }],
  list: ["/list [filter]", (args, rest) => openChannelList(rest)],
  close: ["/close (part a channel, close a query)", () => {
    const buf = app.active;
    if (!buf || buf.kind === "server") return;
    if (buf.kind === "channel" && buf.joined) app.conn.sendCmd("PART", buf.name);
    app.closeBuffer(buf);
  }],
  help: ["/help", () => {
    info(app.active, "Commands:");
    for (const [usage] of Object.values(COMMANDS)) info(app.active, `  ${usage}`);
    info(app.active, "Keys: Alt+Up/Down or Ctrl+K switch buffers, Tab completes nicks, Up/Down recall input.");
  }],
};
COMMANDS.raw = COMMANDS.quote;
COMMANDS.j = COMMANDS.join;
COMMANDS.leave = COMMANDS.part;
COMMANDS.back = [COMMANDS.away[0], () => app.conn.sendCmd("AWAY")];

export function runInput(text) {
  if (!app.conn.connected) {
    errorLine("Not connected: the line was not sent.");
    return;
  }
  if (text.startsWith("/") && !text.startsWith("//")) {
    const match = /^\/(\S+)\s*(.*)$/s.exec(text);
    const name = match[1].toLowerCase();
    const rest = match[2];
    const command = COMMANDS[name];
    if (!command) {
      errorLine(`Unknown command /${name}. Type /help for the list, or /quote to send a raw line.`);
      return;
    }
    command[1](rest.split(/\s+/).filter(Boolean), rest);
    return;
  }
  const target = needTarget();
  if (target) say(target, text.startsWith("//") ? text.slice(1) : text);
}
