import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { alias: { "@": fileURLToPath(new URL("./src", import.meta.url)) } },
  test: {
    include: ["tests/e2e/**/*.test.ts"],
    environment: "node",
    fileParallelism: false,
    // One real (tiny) training run on CPU: minutes, not seconds.
    testTimeout: 15 * 60_000,
    hookTimeout: 5 * 60_000,
  },
});
