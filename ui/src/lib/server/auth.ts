// AI_TOOLKIT_AUTH: when set, every API route needs it, as `Authorization: Bearer <token>`, or the
// session cookie the login route sets (a random session id, never the token: sessions.ts). When it is not set the server only listens on loopback
// (scripts/bind.mjs), and requests must name a loopback host (a page on another site that
// rebinds its DNS name to 127.0.0.1 is refused). State-changing requests from another origin are
// refused either way (cross-site form posts).
import crypto from "node:crypto";
import { isLoopback } from "../../../scripts/bind.mjs";
import { HttpError } from "./http";
import { SESSION_COOKIE, sessionValid } from "./sessions";
import { settings } from "./settings";

function digest(value: string): Buffer {
  return crypto.createHash("sha256").update(value).digest();
}

/** Constant-time comparison of a presented token with the configured one. */
export function tokenMatches(presented: string | null | undefined, token: string): boolean {
  if (!presented || !token) return false;
  return crypto.timingSafeEqual(digest(presented), digest(token));
}

export function cookieValue(req: Request, name: string): string | null {
  const header = req.headers.get("cookie");
  if (!header) return null;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return null;
      }
    }
  }
  return null;
}

function bearer(req: Request): string | null {
  const header = req.headers.get("authorization");
  const match = header?.match(/^Bearer\s+(.+)$/i);
  return match ? match[1].trim() : null;
}

function hostName(hostHeader: string): string {
  // "127.0.0.1:8675" -> "127.0.0.1", "[::1]:8675" -> "::1"
  const match = hostHeader.match(/^\[([^\]]+)\](?::\d+)?$/) || hostHeader.match(/^([^:]+)(?::\d+)?$/);
  return match ? match[1] : hostHeader;
}

export function isAuthenticated(req: Request): boolean {
  const token = settings().authToken;
  if (!token) return true;
  return tokenMatches(bearer(req), token) || sessionValid(cookieValue(req, SESSION_COOKIE));
}

export function checkRequestAuth(req: Request, { requireToken }: { requireToken: boolean }): void {
  const token = settings().authToken;
  const host = req.headers.get("host") || new URL(req.url).host;
  const method = req.method.toUpperCase();
  if (method !== "GET" && method !== "HEAD") {
    const origin = req.headers.get("origin");
    if (origin !== null) {
      let originHost = "";
      try {
        originHost = new URL(origin).host;
      } catch {
        originHost = "";
      }
      if (originHost !== host) throw new HttpError(403, "cross-origin request refused");
    }
  }
  if (!token) {
    if (!isLoopback(hostName(host))) {
      throw new HttpError(403, "without AI_TOOLKIT_AUTH the UI only answers requests to localhost / 127.0.0.1");
    }
    return;
  }
  if (requireToken && !isAuthenticated(req)) {
    throw new HttpError(401, "authentication required: log in with the AI_TOOLKIT_AUTH token");
  }
}
