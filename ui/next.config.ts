import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Native module: loaded by Node at run time, never bundled.
  serverExternalPackages: ["better-sqlite3"],
  poweredByHeader: false,
  // The UI runs next to the trainer, usually on a box without internet: no telemetry, no remote images.
  images: { unoptimized: true },
  // API routes are the only thing that touches disk; their paths are guarded there (src/lib/server/paths.ts).
  typescript: { ignoreBuildErrors: false },
};

export default nextConfig;
