// Login for browsers: POST the AI_TOOLKIT_AUTH token once, get an HttpOnly, SameSite=Strict
// cookie that the other API routes (and <img> / download links) then carry.
import { AUTH_COOKIE, isAuthenticated, tokenMatches } from "@/lib/server/auth";
import { HttpError, json, readJson, withApi } from "@/lib/server/http";
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
    const cookie = `${AUTH_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${30 * 86400}`;
    return json({ required: true, authenticated: true }, 200, { "set-cookie": cookie });
  },
  { public: true },
);

export const DELETE = withApi(
  () => json({ ok: true }, 200, { "set-cookie": `${AUTH_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0` }),
  { public: true },
);
