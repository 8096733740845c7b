// Runs once when the Next.js server starts: the worker must run (and re-attach to jobs left
// running by a previous server) even before anyone opens a page.
export async function register() {
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { boot } = await import("./lib/server/boot");
    try {
      boot();
    } catch (err) {
      console.error(`error: ${err instanceof Error ? err.message : err}`);
      process.exit(1);
    }
  }
}
