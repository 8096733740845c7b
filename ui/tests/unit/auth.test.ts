// AI_TOOLKIT_AUTH on every API route, the bind rule, and cross-origin / DNS-rebinding refusals.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bindSettings, isLoopback } from "../../scripts/bind.mjs";
import { body, ctx, request, UI_DIR, useTempDataRoot } from "./helpers";

useTempDataRoot();
const TOKEN = "correct-horse-battery-staple";
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;

function routeFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? routeFiles(full) : e.name === "route.ts" ? [full] : [];
  });
}

const API_DIR = path.join(UI_DIR, "src/app/api");
const ROUTES = routeFiles(API_DIR);
const PUBLIC = new Set(["auth"]); // the login route itself

function urlFor(file: string): string {
  return "/api/" + path.relative(API_DIR, path.dirname(file)).replace(/\[\.\.\.(\w+)\]/g, "x/y").replace(/\[(\w+)\]/g, "1");
}

describe("bind rule", () => {
  it("knows loopback addresses", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) expect(isLoopback(h)).toBe(true);
    for (const h of ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.com", ""]) expect(isLoopback(h)).toBe(false);
  });
  it("defaults to 127.0.0.1:8675 and honours PORT", () => {
    expect(bindSettings({})).toEqual({ host: "127.0.0.1", port: 8675 });
    expect(bindSettings({ PORT: "9000" })).toEqual({ host: "127.0.0.1", port: 9000 });
  });
  it("refuses to listen off loopback without a token", () => {
    expect(() => bindSettings({ HOST: "0.0.0.0" })).toThrow(/AI_TOOLKIT_AUTH/);
    expect(bindSettings({ HOST: "0.0.0.0", AI_TOOLKIT_AUTH: TOKEN })).toEqual({ host: "0.0.0.0", port: 8675 });
    expect(() => bindSettings({ HOST: "0.0.0.0", AI_TOOLKIT_AUTH: "short" })).toThrow(/too short/);
    expect(() => bindSettings({ PORT: "http" })).toThrow(/PORT/);
  });
});

describe("with AI_TOOLKIT_AUTH set", () => {
  beforeEach(() => {
    process.env.AI_TOOLKIT_AUTH = TOKEN;
  });
  afterEach(() => {
    delete process.env.AI_TOOLKIT_AUTH;
  });

  it("finds the API routes", () => {
    expect(ROUTES.length).toBeGreaterThanOrEqual(12);
  });

  it("rejects every unauthenticated API request with 401", async () => {
    let checked = 0;
    for (const file of ROUTES) {
      const mod = await import(file);
      const isPublic = PUBLIC.has(path.relative(API_DIR, path.dirname(file)));
      for (const method of METHODS) {
        const handler = mod[method];
        if (!handler || isPublic) continue;
        const res = await handler(request(urlFor(file), { method }), ctx({ id: "1", name: "x", root: "output", path: ["x", "y"] }));
        expect(res.status, `${method} ${urlFor(file)}`).toBe(401);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(15);
  });

  it("rejects a wrong token and accepts the right one as a Bearer header", async () => {
    const { GET } = await import("@/app/api/jobs/route");
    const wrong = await GET(request("/api/jobs", { headers: { authorization: "Bearer nope-nope-nope" } }), ctx());
    expect(wrong.status).toBe(401);
    const right = await GET(request("/api/jobs", { headers: { authorization: `Bearer ${TOKEN}` } }), ctx());
    expect(right.status).toBe(200);
    expect((await body(right)).jobs).toEqual([]);
  });

  it("logs a browser in with an HttpOnly SameSite cookie", async () => {
    const auth = await import("@/app/api/auth/route");
    const status = await body(await auth.GET(request("/api/auth"), ctx()));
    expect(status).toEqual({ required: true, authenticated: false });
    const bad = await auth.POST(request("/api/auth", { method: "POST", json: { token: "wrong-token" } }), ctx());
    expect(bad.status).toBe(401);
    const ok = await auth.POST(request("/api/auth", { method: "POST", json: { token: TOKEN } }), ctx());
    expect(ok.status).toBe(200);
    const cookie = ok.headers.get("set-cookie")!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const pair = cookie.split(";")[0];
    const { GET } = await import("@/app/api/datasets/route");
    expect((await GET(request("/api/datasets", { headers: { cookie: pair } }), ctx())).status).toBe(200);
    expect((await GET(request("/api/datasets", { headers: { cookie: "aitk_session=forged" } }), ctx())).status).toBe(401);
  });
});

describe("sessions", () => {
  beforeEach(() => {
    process.env.AI_TOOLKIT_AUTH = TOKEN;
  });
  afterEach(() => {
    delete process.env.AI_TOOLKIT_AUTH;
    delete process.env.SESSION_HOURS;
  });

  async function login(): Promise<string> {
    const auth = await import("@/app/api/auth/route");
    const res = await auth.POST(request("/api/auth", { method: "POST", json: { token: TOKEN } }), ctx());
    expect(res.status).toBe(200);
    return res.headers.get("set-cookie")!.split(";")[0];
  }

  async function status(cookie: string): Promise<number> {
    const { GET } = await import("@/app/api/jobs/route");
    return (await GET(request("/api/jobs", { headers: { cookie } }), ctx())).status;
  }

  it("the cookie holds a random session id, not the token; the table holds only its hash", async () => {
    const a = await login();
    const b = await login();
    expect(a).toMatch(/^aitk_session=[A-Za-z0-9_-]{43}$/);
    expect(a).not.toContain(TOKEN);
    expect(a).not.toBe(b);
    const { getDb } = await import("@/lib/server/db");
    const rows = getDb().prepare("SELECT * FROM sessions").all() as Record<string, unknown>[];
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(a.split("=")[1]);
    expect(dump).not.toContain(TOKEN);
    expect([await status(a), await status(b)]).toEqual([200, 200]);
    expect(await status(`aitk_auth=${TOKEN}`)).toBe(401); // the old token cookie is no login
  });

  it("expires", async () => {
    process.env.SESSION_HOURS = "1";
    const cookie = await login();
    expect(await status(cookie)).toBe(200);
    const { getDb } = await import("@/lib/server/db");
    getDb().prepare("UPDATE sessions SET expires_at = ?").run(Date.now() / 1000 - 1);
    expect(await status(cookie)).toBe(401);
    const created = login();
    await created; // a new login clears expired rows
    expect((getDb().prepare("SELECT COUNT(*) AS n FROM sessions WHERE expires_at <= ?").get(Date.now() / 1000) as { n: number }).n).toBe(0);
  });

  it("logging out revokes that session only; ?all=1 revokes every one", async () => {
    const auth = await import("@/app/api/auth/route");
    const a = await login();
    const b = await login();
    const out = await auth.DELETE(request("/api/auth", { method: "DELETE", headers: { cookie: a } }), ctx());
    expect(out.headers.get("set-cookie")).toMatch(/Max-Age=0/);
    expect([await status(a), await status(b)]).toEqual([401, 200]);
    const c = await login();
    expect((await auth.DELETE(request("/api/auth?all=1", { method: "DELETE" }), ctx())).status).toBe(401); // not logged in
    const all = await auth.DELETE(request("/api/auth?all=1", { method: "DELETE", headers: { cookie: c } }), ctx());
    expect((await body(all)).revoked).toBeGreaterThanOrEqual(2);
    expect([await status(b), await status(c)]).toEqual([401, 401]);
  });

  it("changing the token revokes every session", async () => {
    const cookie = await login();
    expect(await status(cookie)).toBe(200);
    process.env.AI_TOOLKIT_AUTH = "a-brand-new-token-value";
    expect(await status(cookie)).toBe(401);
    process.env.AI_TOOLKIT_AUTH = TOKEN; // a session belongs to the token it was opened with
    expect(await status(cookie)).toBe(200);
  });
});

describe("without a token (loopback only)", () => {
  it("answers requests addressed to localhost", async () => {
    const { GET } = await import("@/app/api/jobs/route");
    expect((await GET(request("/api/jobs"), ctx())).status).toBe(200);
    expect((await GET(request("/api/jobs", { headers: { host: "localhost:8675" } }), ctx())).status).toBe(200);
  });
  it("refuses a request for another host name (DNS rebinding)", async () => {
    const { GET } = await import("@/app/api/jobs/route");
    const res = await GET(request("/api/jobs", { headers: { host: "evil.example:8675" } }), ctx());
    expect(res.status).toBe(403);
  });
  it("refuses state changes from another origin (cross-site form posts)", async () => {
    const { POST } = await import("@/app/api/datasets/route");
    const res = await POST(request("/api/datasets", { method: "POST", json: { name: "x" }, headers: { origin: "http://evil.example" } }), ctx());
    expect(res.status).toBe(403);
    const same = await POST(request("/api/datasets", { method: "POST", json: { name: "same_origin" }, headers: { origin: "http://127.0.0.1:8675" } }), ctx());
    expect(same.status).toBe(201);
  });
});
