"use client";
// Fetching the API from pages: JSON in and out, a 401 sends the browser to the login page.
import { useCallback, useEffect, useRef, useState } from "react";

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public data: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export async function api<T = Record<string, unknown>>(url: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const headers = new Headers(init.headers);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(init.json);
  }
  const res = await fetch(url, { ...init, headers, body, credentials: "same-origin", cache: "no-store" });
  let data: Record<string, unknown> = {};
  try {
    data = await res.json();
  } catch {
    data = {};
  }
  if (res.status === 401 && typeof window !== "undefined" && !window.location.pathname.startsWith("/login")) {
    window.location.href = `/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
  }
  if (!res.ok) {
    // 422 carries `problems` (by key path) in `data`
    throw new ApiError(res.status, typeof data.error === "string" ? data.error : `HTTP ${res.status}`, data);
  }
  return data as T;
}

/** GET `url` now and every `pollMs` (when given); `reload()` refetches at once. */
export function useApi<T>(url: string | null, pollMs?: number | ((data: T | undefined) => number | undefined)) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const dataRef = useRef<T | undefined>(undefined);
  const load = useCallback(async () => {
    if (!url) return;
    try {
      const value = await api<T>(url);
      dataRef.current = value;
      setData(value);
      setError(null);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setLoading(false);
    }
  }, [url]);

  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const loop = async () => {
      await load();
      if (stopped) return;
      const every = typeof pollMs === "function" ? pollMs(dataRef.current) : pollMs;
      if (every) timer = setTimeout(loop, every);
    };
    loop();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [load]);

  return { data, error, loading, reload: load };
}
