"use client";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useEffect, useState } from "react";
import { api } from "@/lib/client/api";

const LINKS = [
  { href: "/", label: "Dashboard" },
  { href: "/jobs", label: "Jobs" },
  { href: "/jobs/new", label: "New job" },
  { href: "/datasets", label: "Datasets" },
];

export function Nav() {
  const pathname = usePathname();
  const [authRequired, setAuthRequired] = useState(false);
  useEffect(() => {
    api<{ required: boolean }>("/api/auth")
      .then((r) => setAuthRequired(r.required))
      .catch(() => setAuthRequired(false));
  }, []);
  // the login page is the way in: no menu of pages it cannot show yet
  if (pathname === "/login") return null;
  const active = (href: string) =>
    href === "/" ? pathname === "/" : pathname === href || (pathname.startsWith(href + "/") && !(href === "/jobs" && pathname === "/jobs/new"));
  return (
    <nav className="nav">
      <div className="brand">
        FLUX <span>LoRA</span>
      </div>
      {LINKS.map((l) => (
        <Link key={l.href} href={l.href} className={active(l.href) ? "active" : ""}>
          {l.label}
        </Link>
      ))}
      {authRequired ? (
        <button
          className="link-button"
          onClick={async () => {
            await api("/api/auth", { method: "DELETE" });
            window.location.href = "/login";
          }}
        >
          Log out
        </button>
      ) : null}
      {authRequired ? (
        <button
          className="link-button"
          title="End every browser session (all devices)"
          onClick={async () => {
            await api("/api/auth?all=1", { method: "DELETE" });
            window.location.href = "/login";
          }}
        >
          Log out everywhere
        </button>
      ) : null}
    </nav>
  );
}
