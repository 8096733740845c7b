// Where the server listens, and whether that is allowed: shared by scripts/start.mjs (before
// Next.js starts) and the server itself (src/lib/server/boot.ts), so there is one rule.

/**
 * True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost.
 * @param {string | undefined} host
 */
export function isLoopback(host) {
  const h = String(host || "").trim().toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (/^127(\.\d{1,3}){3}$/.test(h)) return true;
  if (/^::ffff:127(\.\d{1,3}){3}$/.test(h)) return true;
  return false;
}

/**
 * The listen address from the environment (HOST, PORT) and the refusal to run without a token
 * on anything but loopback. Returns {host, port} or throws an Error whose message says the fix.
 * @param {Record<string, string | undefined>} [env]
 * @returns {{ host: string, port: number }}
 */
export function bindSettings(env = process.env) {
  const host = (env.HOST || "127.0.0.1").trim();
  const portText = (env.PORT || "8675").trim();
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be an integer 0-65535, got ${JSON.stringify(portText)}`);
  }
  const token = env.AI_TOOLKIT_AUTH || "";
  if (!isLoopback(host) && !token) {
    throw new Error(
      `refusing to listen on ${host} without an auth token: anyone who reaches this port could ` +
        `run code on this machine. Set AI_TOOLKIT_AUTH to a long random secret, or listen on ` +
        `127.0.0.1 (the default) and use an SSH tunnel.`,
    );
  }
  if (token && token.length < 8) {
    throw new Error("AI_TOOLKIT_AUTH is too short: use at least 8 characters (a long random secret)");
  }
  return { host, port };
}
