"use client";
import { Suspense, useState } from "react";
import { useSearchParams } from "next/navigation";
import { api } from "@/lib/client/api";
import { ErrorBox } from "@/components/ui";

function LoginForm() {
  const params = useSearchParams();
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const next = params.get("next");
  const target = next && next.startsWith("/") && !next.startsWith("//") ? next : "/";
  return (
    <form
      className="panel"
      style={{ maxWidth: 420 }}
      onSubmit={async (e) => {
        e.preventDefault();
        try {
          await api("/api/auth", { method: "POST", json: { token } });
          window.location.href = target;
        } catch (err) {
          setError(err instanceof Error ? err.message : String(err));
        }
      }}
    >
      <label className="field">
        <span className="label">Access token</span>
        <input type="password" name="token" value={token} onChange={(e) => setToken(e.target.value)} autoFocus />
        <span className="help">The value of AI_TOOLKIT_AUTH on the server.</span>
      </label>
      <ErrorBox error={error} />
      <button className="primary" type="submit">
        Log in
      </button>
    </form>
  );
}

export default function LoginPage() {
  return (
    <div>
      <h1>Log in</h1>
      <Suspense>
        <LoginForm />
      </Suspense>
    </div>
  );
}
