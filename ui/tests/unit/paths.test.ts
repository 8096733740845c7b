import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpError } from "@/lib/server/http";
import { checkName, checkRelative, resolveExisting, resolveForWrite } from "@/lib/server/paths";

let tmp = "";
let root = "";
let outside = "";

function status(fn: () => unknown): number | "ok" {
  try {
    fn();
    return "ok";
  } catch (err) {
    if (err instanceof HttpError) return err.status;
    throw err;
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "aitk-paths-"));
  root = path.join(tmp, "root");
  outside = path.join(tmp, "outside");
  fs.mkdirSync(path.join(root, "ds"), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(root, "ds", "a.png"), "x");
  fs.writeFileSync(path.join(outside, "secret.txt"), "secret");
  fs.symlinkSync(path.join(outside, "secret.txt"), path.join(root, "ds", "link.txt"));
  fs.symlinkSync(outside, path.join(root, "escape"));
  fs.symlinkSync(path.join(root, "ds", "a.png"), path.join(root, "ds", "inner.png"));
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("checkRelative", () => {
  it("accepts plain relative paths", () => {
    expect(checkRelative("ds/a.png")).toEqual(["ds", "a.png"]);
    expect(checkRelative(["ds", "a.png"])).toEqual(["ds", "a.png"]);
  });
  it.each([
    ["../etc/passwd"],
    ["ds/../../etc"],
    ["ds/.."],
    ["/etc/passwd"],
    ["\\windows"],
    ["ds//a.png"],
    ["./ds"],
    [""],
    ["ds/a\0.png"],
    ["C:/x"],
  ])("refuses %j", (rel) => {
    expect(status(() => checkRelative(rel))).toBe(400);
  });
  it("refuses segments that smuggle separators (decoded %2F) or traversal", () => {
    expect(status(() => checkRelative(["ds", "../../x"]))).toBe(400);
    expect(status(() => checkRelative(["..", "x"]))).toBe(400);
    expect(status(() => checkRelative(["ds\\..\\x"]))).toBe(400);
  });
});

describe("resolveExisting", () => {
  it("resolves files inside the root", () => {
    expect(resolveExisting(root, "ds/a.png")).toBe(fs.realpathSync(path.join(root, "ds", "a.png")));
  });
  it("follows symlinks that stay inside", () => {
    expect(resolveExisting(root, "ds/inner.png")).toBe(fs.realpathSync(path.join(root, "ds", "a.png")));
  });
  it("refuses a symlinked file that points outside", () => {
    expect(status(() => resolveExisting(root, "ds/link.txt"))).toBe(403);
  });
  it("refuses a symlinked folder that points outside", () => {
    expect(status(() => resolveExisting(root, "escape/secret.txt"))).toBe(403);
  });
  it("refuses traversal and absolute paths before touching the disk", () => {
    expect(status(() => resolveExisting(root, "../outside/secret.txt"))).toBe(400);
    expect(status(() => resolveExisting(root, path.join(outside, "secret.txt")))).toBe(400);
  });
  it("404s on missing files and refuses the root itself", () => {
    expect(status(() => resolveExisting(root, "ds/missing.png"))).toBe(404);
    expect(status(() => resolveExisting(path.join(tmp, "nope"), "ds"))).toBe(404);
  });
});

describe("resolveForWrite", () => {
  it("allows a new file in an existing folder", () => {
    expect(resolveForWrite(root, "ds/new.png")).toBe(path.join(fs.realpathSync(root), "ds", "new.png"));
  });
  it("refuses to write through a symlink (even one pointing outside)", () => {
    expect(status(() => resolveForWrite(root, "ds/link.txt"))).toBe(403);
  });
  it("refuses a parent folder that resolves outside", () => {
    expect(status(() => resolveForWrite(root, "escape/new.txt"))).toBe(403);
  });
  it("refuses traversal, absolute paths and missing folders", () => {
    expect(status(() => resolveForWrite(root, "../x.txt"))).toBe(400);
    expect(status(() => resolveForWrite(root, "/tmp/x.txt"))).toBe(400);
    expect(status(() => resolveForWrite(root, "nope/x.txt"))).toBe(404);
  });
});

describe("checkName", () => {
  it("accepts simple names and refuses path-like ones", () => {
    expect(checkName("job", "my_lora-v1.2")).toBe("my_lora-v1.2");
    for (const bad of ["", "..", ".hidden", "a/b", "a\\b", "a..b", "x".repeat(65), "名前", null, 3]) {
      expect(status(() => checkName("job", bad))).toBe(400);
    }
  });
});
