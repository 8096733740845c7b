// Dataset routes (create, upload, captions, delete) and the file route, through the path guard.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import * as caption from "@/app/api/datasets/[name]/caption/route";
import * as image from "@/app/api/datasets/[name]/image/route";
import * as one from "@/app/api/datasets/[name]/route";
import * as upload from "@/app/api/datasets/[name]/upload/route";
import * as datasets from "@/app/api/datasets/route";
import * as files from "@/app/api/files/[root]/[...path]/route";
import { body, ctx, PNG_BYTES, request, uploadForm, useTempDataRoot } from "./helpers";

const data = useTempDataRoot();
const dsDir = () => path.join(data.root(), "datasets");

async function post(name: string, form: FormData) {
  return upload.POST(request(`/api/datasets/${name}/upload`, { method: "POST", body: form }), ctx({ name }));
}

async function getFile(root: string, segments: string[], query = "") {
  return files.GET(request(`/api/files/${root}/${segments.join("/")}${query}`), ctx({ root, path: segments }));
}

describe("datasets", () => {
  it("creates, lists and refuses bad or duplicate names", async () => {
    const res = await datasets.POST(request("/api/datasets", { method: "POST", json: { name: "robots" } }), ctx());
    expect(res.status).toBe(201);
    expect(fs.statSync(path.join(dsDir(), "robots")).isDirectory()).toBe(true);
    const dup = await datasets.POST(request("/api/datasets", { method: "POST", json: { name: "robots" } }), ctx());
    expect(dup.status).toBe(409);
    for (const bad of ["..", "../x", "/tmp/x", "a/b", ".hidden", ""]) {
      const r = await datasets.POST(request("/api/datasets", { method: "POST", json: { name: bad } }), ctx());
      expect(r.status, bad).toBe(400);
    }
    const list = await body(await datasets.GET(request("/api/datasets"), ctx()));
    expect(list.datasets.map((d: { name: string }) => d.name)).toEqual(["robots"]);
  });

  it("uploads images and captions, rejecting other types, fakes and oversize files", async () => {
    const form = uploadForm([
      { name: "robot_00.png", data: PNG_BYTES },
      { name: "robot_00.txt", data: "a photo of r0b0t" },
      { name: "evil.exe", data: "MZ" },
      { name: "fake.png", data: "not a png at all" },
      { name: "../../escape.png", data: PNG_BYTES },
      { name: "notes.md", data: "# hi" },
    ]);
    const res = await post("robots", form);
    expect(res.status).toBe(200);
    const result = await body(res);
    // the traversal in the uploaded name is cut to its last segment
    expect(result.saved.sort()).toEqual(["escape.png", "robot_00.png", "robot_00.txt"]);
    expect(result.rejected.map((r: { file: string }) => r.file).sort()).toEqual(["evil.exe", "fake.png", "notes.md"]);
    expect(fs.existsSync(path.join(data.root(), "escape.png"))).toBe(false);
    expect(fs.readdirSync(path.join(dsDir(), "robots")).sort()).toEqual(["escape.png", "robot_00.png", "robot_00.txt"]);

    process.env.MAX_UPLOAD_MB = "1";
    try {
      const big = new Uint8Array(1024 * 1024 + 10);
      big.set(PNG_BYTES.subarray(0, 8));
      const r = await post("robots", uploadForm([{ name: "big.png", data: big }]));
      expect(r.status).toBe(400);
      expect((await body(r)).rejected[0].reason).toMatch(/larger than/);
    } finally {
      delete process.env.MAX_UPLOAD_MB;
    }
  });

  it("refuses an oversize request before reading it", async () => {
    const req = request("/api/datasets/robots/upload", {
      method: "POST",
      body: uploadForm([{ name: "a.png", data: PNG_BYTES }]),
      headers: { "content-length": String(2 * 1024 * 1024 * 1024) },
    });
    const res = await upload.POST(req, ctx({ name: "robots" }));
    expect(res.status).toBe(413);
  });

  it("refuses uploads into a missing dataset or through a traversal", async () => {
    expect((await post("nope", uploadForm([{ name: "a.png", data: PNG_BYTES }]))).status).toBe(404);
    expect((await post("..", uploadForm([{ name: "a.png", data: PNG_BYTES }]))).status).toBe(400);
  });

  it("refuses to write a caption through a symlink pointing outside", async () => {
    const outside = path.join(data.root(), "outside.txt");
    fs.writeFileSync(outside, "keep me");
    fs.writeFileSync(path.join(dsDir(), "robots", "linked.png"), PNG_BYTES);
    fs.symlinkSync(outside, path.join(dsDir(), "robots", "linked.txt"));
    const res = await caption.PUT(
      request("/api/datasets/robots/caption", { method: "PUT", json: { image: "linked.png", caption: "pwned" } }),
      ctx({ name: "robots" }),
    );
    expect(res.status).toBe(403);
    expect(fs.readFileSync(outside, "utf8")).toBe("keep me");
    fs.rmSync(path.join(dsDir(), "robots", "linked.txt"));
    fs.rmSync(path.join(dsDir(), "robots", "linked.png"));
  });

  it("lists images with captions and edits captions", async () => {
    const res = await caption.PUT(
      request("/api/datasets/robots/caption", { method: "PUT", json: { image: "escape.png", caption: "a [trigger] robot" } }),
      ctx({ name: "robots" }),
    );
    expect(res.status).toBe(200);
    const listing = await body(await one.GET(request("/api/datasets/robots"), ctx({ name: "robots" })));
    expect(listing.images).toEqual([
      { file: "escape.png", url: "/api/files/datasets/robots/escape.png", size: PNG_BYTES.length, caption: "a [trigger] robot", reference: null },
      { file: "robot_00.png", url: "/api/files/datasets/robots/robot_00.png", size: PNG_BYTES.length, caption: "a photo of r0b0t", reference: null },
    ]);
    expect(listing.references).toEqual([]);
    expect(listing.reference_problems).toEqual([]);
    for (const bad of ["../x.png", "robot_00.txt", "/etc/passwd", "missing.png"]) {
      const r = await caption.PUT(
        request("/api/datasets/robots/caption", { method: "PUT", json: { image: bad, caption: "x" } }),
        ctx({ name: "robots" }),
      );
      expect([400, 404], bad).toContain(r.status);
    }
  });

  it("serves dataset images and refuses traversal, absolute paths and symlinks out", async () => {
    const ok = await getFile("datasets", ["robots", "robot_00.png"]);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await ok.arrayBuffer()).equals(PNG_BYTES)).toBe(true);

    fs.writeFileSync(path.join(data.root(), "secret.txt"), "secret");
    fs.symlinkSync(path.join(data.root(), "secret.txt"), path.join(dsDir(), "robots", "secret.txt"));
    fs.symlinkSync(data.root(), path.join(dsDir(), "root_link"));
    expect((await getFile("datasets", ["robots", "secret.txt"])).status).toBe(403);
    expect((await getFile("datasets", ["root_link", "secret.txt"])).status).toBe(403);
    expect((await getFile("datasets", ["..", "secret.txt"])).status).toBe(400);
    expect((await getFile("datasets", ["robots", "..", "..", "secret.txt"])).status).toBe(400);
    expect((await getFile("datasets", ["robots/../../secret.txt"])).status).toBe(400);
    expect((await getFile("datasets", ["", "etc", "passwd"])).status).toBe(400);
    expect((await getFile("output", ["..", "ui.sqlite"])).status).toBe(400);
    expect((await getFile("elsewhere", ["robots", "robot_00.png"])).status).toBe(404);
    expect((await getFile("datasets", ["robots", "missing.png"])).status).toBe(404);
    // a symlinked dataset is not listed either
    const list = await body(await datasets.GET(request("/api/datasets"), ctx()));
    expect(list.datasets.map((d: { name: string }) => d.name)).toEqual(["robots"]);
  });

  it("deletes an image with its caption, then the dataset", async () => {
    const res = await image.DELETE(request("/api/datasets/robots/image?file=robot_00.png", { method: "DELETE" }), ctx({ name: "robots" }));
    expect(res.status).toBe(200);
    expect(fs.existsSync(path.join(dsDir(), "robots", "robot_00.png"))).toBe(false);
    expect(fs.existsSync(path.join(dsDir(), "robots", "robot_00.txt"))).toBe(false);
    const bad = await image.DELETE(request("/api/datasets/robots/image?file=../../ui.sqlite", { method: "DELETE" }), ctx({ name: "robots" }));
    expect(bad.status).toBe(400);
    expect(fs.existsSync(path.join(data.root(), "ui.sqlite"))).toBe(true);

    // deleting a symlinked dataset removes the link, never what it points to
    expect((await one.DELETE(request("/api/datasets/root_link", { method: "DELETE" }), ctx({ name: "root_link" }))).status).toBe(200);
    expect(fs.existsSync(path.join(data.root(), "secret.txt"))).toBe(true);
    expect((await one.DELETE(request("/api/datasets/robots", { method: "DELETE" }), ctx({ name: "robots" }))).status).toBe(200);
    expect(fs.existsSync(path.join(dsDir(), "robots"))).toBe(false);
    expect((await one.DELETE(request("/api/datasets/..", { method: "DELETE" }), ctx({ name: ".." }))).status).toBe(400);
  });
});
