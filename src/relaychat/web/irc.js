// IRC lines: parse and build (IRCv3 message tags), case folding, CTCP and
// formatting codes. Pure functions, no DOM, no network.

const TAG_UNESCAPE = { ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" };

function unescapeTag(value) {
  return value.replace(/\\(.?)/g, (_, c) => (c in TAG_UNESCAPE ? TAG_UNESCAPE[c] : c));
}

/** Parse one line (no CRLF) into {tags, source, nick, command, params}; null if empty. */
export function parseLine(line) {
  let rest = line.replace(/[\r\n]+$/, "");
  const msg = { tags: {}, source: "", nick: "", command: "", params: [] };
  if (rest.startsWith("@")) {
    const end = rest.indexOf(" ");
    if (end < 0) return null;
    for (const item of rest.slice(1, end).split(";")) {
      if (!item) continue;
      const eq = item.indexOf("=");
      if (eq < 0) msg.tags[item] = "";
      else msg.tags[item.slice(0, eq)] = unescapeTag(item.slice(eq + 1));
    }
    rest = rest.slice(end + 1).replace(/^ +/, "");
  }
  if (rest.startsWith(":")) {
    const end = rest.indexOf(" ");
    if (end < 0) return null;
    msg.source = rest.slice(1, end);
    msg.nick = msg.source.split("!")[0].split("@")[0];
    rest = rest.slice(end + 1).replace(/^ +/, "");
  }
  while (rest) {
    if (rest.startsWith(":")) {
      msg.params.push(rest.slice(1));
      break;
    }
    const end = rest.indexOf(" ");
    if (end < 0) {
      msg.params.push(rest);
      break;
    }
    msg.params.push(rest.slice(0, end));
    rest = rest.slice(end + 1).replace(/^ +/, "");
  }
  msg.command = (msg.params.shift() || "").toUpperCase();
  return msg.command ? msg : null;
}

/** Build a line from a command and parameters; CR, LF and NUL never get through. */
export function buildLine(command, ...params) {
  const clean = params.map((p) => String(p).replace(/[\r\n\0]/g, " "));
  const last = clean.length - 1;
  return [command]
    .concat(
      clean.map((p, i) =>
        i === last && (p === "" || p.includes(" ") || p.startsWith(":")) ? ":" + p : p
      )
    )
    .join(" ");
}

const FOLDS = {
  ascii: (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase()),
  rfc1459: (s) =>
    s.replace(/[A-Z[\]\\~]/g, (c) => ({ "[": "{", "]": "}", "\\": "|", "~": "^" })[c] || c.toLowerCase()),
};
FOLDS["strict-rfc1459"] = (s) =>
  s.replace(/[A-Z[\]\\]/g, (c) => ({ "[": "{", "]": "}", "\\": "|" })[c] || c.toLowerCase());

export function folder(casemapping) {
  return FOLDS[casemapping] || FOLDS.rfc1459;
}

/** "\x01ACTION waves\x01" -> {command: "ACTION", text: "waves"}; null if not CTCP. */
export function parseCtcp(text) {
  if (text.length < 2 || text[0] !== "\x01") return null;
  const body = text.slice(1).replace(/\x01$/, "");
  const sp = body.indexOf(" ");
  return sp < 0
    ? { command: body.toUpperCase(), text: "" }
    : { command: body.slice(0, sp).toUpperCase(), text: body.slice(sp + 1) };
}

/**
 * Split text with IRC formatting codes into runs: [{text, bold, italic, underline,
 * strike, mono, fg, bg}]. Colours are numbers 0-98 (the caller maps them to CSS
 * classes), never raw strings; hex colours (\x04) are dropped.
 */
export function formatRuns(text) {
  const runs = [];
  let style = {};
  let buf = "";
  const flush = () => {
    if (buf) runs.push({ text: buf, ...style });
    buf = "";
  };
  const toggle = (key) => {
    flush();
    style = { ...style, [key]: !style[key] };
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    switch (c) {
      case "\x02": toggle("bold"); break;
      case "\x1d": toggle("italic"); break;
      case "\x1f": toggle("underline"); break;
      case "\x1e": toggle("strike"); break;
      case "\x11": toggle("mono"); break;
      case "\x16": flush(); style = { ...style, fg: style.bg, bg: style.fg }; break;
      case "\x0f": flush(); style = {}; break;
      case "\x03": {
        flush();
        const m = /^(\d{1,2})?(?:,(\d{1,2}))?/.exec(text.slice(i + 1));
        if (m[1] === undefined) {
          style = { ...style, fg: undefined, bg: undefined };
        } else {
          style = { ...style, fg: Number(m[1]) };
          if (m[2] !== undefined) style.bg = Number(m[2]);
          i += m[0].length;
        }
        break;
      }
      case "\x04": {
        flush();
        const m = /^([0-9a-fA-F]{6})?(?:,([0-9a-fA-F]{6}))?/.exec(text.slice(i + 1));
        i += m[0].length;
        break;
      }
      default:
        // other C0 controls (except tab) are not shown
        if (c < " " && c !== "\t") break;
        buf += c;
    }
  }
  flush();
  return runs;
}

/** The text without any formatting code (for notifications, titles, matching). */
export function stripFormatting(text) {
  return formatRuns(text).map((r) => r.text).join("");
}

/** "2026-12-01T11:30:15.123Z" -> milliseconds; NaN when absent or invalid. */
export function parseTime(value) {
  return value ? Date.parse(value) : NaN;
}

/** Milliseconds -> the server-time format CHATHISTORY timestamp= references use. */
export function formatTime(ms) {
  return new Date(ms).toISOString();
}
