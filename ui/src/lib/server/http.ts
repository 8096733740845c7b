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

export async function readJson<T = Record<string, unknown>>(req: Request): Promise<T> {
  try {
    const data = await req.json();
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
