// Login for browsers: POST the AI_TOOLKIT_AUTH token once, get a session (an HttpOnly,
// SameSite=Strict cookie with a random id) that the other API routes (and <img> / download links)
// then carry. DELETE logs out (this session; `?all=1`: every session, for a logged-in caller).
import { cookieValue, isAuthenticated, tokenMatches } from "@/lib/server/auth";
import { HttpError, json, readJson, withApi } from "@/lib/server/http";
import { clearedSessionCookie, createSession, deleteAllSessions, deleteSession, SESSION_COOKIE, sessionCookie } from "@/lib/server/sessions";
import { settings } from "@/lib/server/settings";

export const dynamic = "force-dynamic";

export const GET = withApi(
  (req) => {
    const required = settings().authToken !== "";
    return json({ required, authenticated: isAuthenticated(req) });
  },
  { public: true },
);

export const POST = withApi(
  async (req) => {
    const token = settings().authToken;
    if (!token) return json({ required: false, authenticated: true });
    const body = await readJson<{ token?: unknown }>(req);
    if (typeof body.token !== "string" || !tokenMatches(body.token, token)) {
      throw new HttpError(401, "wrong token");
    }
    const session = createSession();
    return json({ required: true, authenticated: true }, 200, { "set-cookie": sessionCookie(session.id, session.maxAge) });
  },
  { public: true },
);

export const DELETE = withApi(
  (req) => {
    if (new URL(req.url).searchParams.get("all") === "1") {
      if (!isAuthenticated(req)) throw new HttpError(401, "log in to end every session");
      return json({ ok: true, revoked: deleteAllSessions() }, 200, { "set-cookie": clearedSessionCookie() });
    }
    deleteSession(cookieValue(req, SESSION_COOKIE));
    return json({ ok: true }, 200, { "set-cookie": clearedSessionCookie() });
  },
  { public: true },
);
