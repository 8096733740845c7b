// Route-handler plumbing: errors as JSON, auth and origin checks on every API route.
import { checkRequestAuth } from "./auth";

export class HttpError extends Error {
  constructor(
    public status: number,
    message: string,
    public extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function json(data: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(data), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

export type RouteParams = Record<string, string | string[] | undefined>;
export type RouteContext = { params: Promise<RouteParams> };
export type Handler = (req: Request, params: RouteParams) => Promise<Response> | Response;

export interface ApiOptions {
  /** Only the login route: it is how a browser gets the cookie. */
  public?: boolean;
}

/** Wraps a handler: auth (when AI_TOOLKIT_AUTH is set), origin check, server boot, JSON errors. */
export function withApi(handler: Handler, options: ApiOptions = {}) {
  return async (req: Request, ctx?: RouteContext): Promise<Response> => {
    try {
      checkRequestAuth(req, { requireToken: !options.public });
      const { boot } = await import("./boot");
      boot();
      const params = ctx?.params ? await ctx.params : {};
      return await handler(req, params);
    } catch (err) {
      if (err instanceof HttpError) {
        return json({ error: err.message, ...err.extra }, err.status);
      }
      console.error("[api]", req.method, new URL(req.url).pathname, err);
      return json({ error: err instanceof Error ? err.message : String(err) }, 500);
    }
  };
}

/** The largest JSON body a route reads (a job's YAML is at most 1 MiB: jobconfig.MAX_YAML_BYTES). */
export const MAX_JSON_BYTES = 2 * 1024 * 1024;

/**
 * The request body, read as it arrives and refused (413) as soon as it passes `limit` bytes,
 * whatever Content-Length says or whether there is one (chunked uploads): memory never holds
 * more than `limit`.
 */
export async function readLimited(req: Request, limit: number, what = "request"): Promise<Uint8Array> {
  const tooLarge = () => new HttpError(413, `${what} too large: at most ${Math.floor(limit / 1024)} KiB`);
  const declared = Number(req.headers.get("content-length") ?? "");
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

export async function readJson<T = Record<string, unknown>>(req: Request): Promise<T> {
  const bytes = await readLimited(req, MAX_JSON_BYTES);
  try {
    const data = JSON.parse(new TextDecoder().decode(bytes));
    if (data === null || typeof data !== "object" || Array.isArray(data)) throw new Error("not an object");
    return data as T;
  } catch {
    throw new HttpError(400, "the request body must be a JSON object");
  }
}

export function param(params: RouteParams, key: string): string {
  const value = params[key];
  if (typeof value !== "string") throw new HttpError(400, `missing ${key}`);
  return value;
}
