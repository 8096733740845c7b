import path from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { alias: { "@": path.resolve(__dirname, "src") } },
  test: {
    include: ["tests/e2e/**/*.test.ts"],
    environment: "node",
    fileParallelism: false,
    // One real (tiny) training run on CPU: minutes, not seconds.
    testTimeout: 15 * 60_000,
    hookTimeout: 5 * 60_000,
  },
});
