// Browser sessions: the login route exchanges the AI_TOOLKIT_AUTH token for a random session id
// (256 bits) in an HttpOnly, SameSite=Strict cookie; the token itself never reaches the cookie.
// The `sessions` table keeps a SHA-256 of each id (a copy of the database gives no usable cookie),
// when it expires, and a hash of the token it was opened with: changing AI_TOOLKIT_AUTH (and
// restarting) revokes every session at once. Logging out deletes the session; `all` deletes every one.
import crypto from "node:crypto";
import { getDb } from "./db";
import { settings } from "./settings";

export const SESSION_COOKIE = "aitk_session";

function sha256(value: string): string {
  return crypto.createHash("sha256").update(value).digest("hex");
}

function now(): number {
  return Date.now() / 1000;
}

/** Opens a session for the current token; returns the id for the cookie and its lifetime in seconds. */
export function createSession(): { id: string; maxAge: number } {
  const s = settings();
  const id = crypto.randomBytes(32).toString("base64url");
  const t = now();
  const db = getDb();
  db.prepare("DELETE FROM sessions WHERE expires_at <= ?").run(t);
  db.prepare("INSERT INTO sessions (id_hash, token_hash, created_at, expires_at, last_seen_at) VALUES (?, ?, ?, ?, ?)").run(
    sha256(id),
    sha256(s.authToken),
    t,
    t + s.sessionTtlS,
    t,
  );
  return { id, maxAge: s.sessionTtlS };
}

/** Whether `id` is a live session opened with the current token. */
export function sessionValid(id: string | null): boolean {
  if (!id || id.length > 128) return false;
  const s = settings();
  const row = getDb().prepare("SELECT token_hash, expires_at, last_seen_at FROM sessions WHERE id_hash = ?").get(sha256(id)) as
    | { token_hash: string; expires_at: number; last_seen_at: number }
    | undefined;
  const t = now();
  if (!row || row.expires_at <= t) return false;
  if (!crypto.timingSafeEqual(Buffer.from(row.token_hash), Buffer.from(sha256(s.authToken)))) return false;
  if (t - row.last_seen_at > 60) getDb().prepare("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?").run(t, sha256(id));
  return true;
}

/** Log out: this session. */
export function deleteSession(id: string | null): void {
  if (id) getDb().prepare("DELETE FROM sessions WHERE id_hash = ?").run(sha256(id));
}

/** Log out everywhere: every session (and those of an older token). */
export function deleteAllSessions(): number {
  return getDb().prepare("DELETE FROM sessions").run().changes;
}

export function sessionCookie(id: string, maxAge: number): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}`;
}

export function clearedSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
}
