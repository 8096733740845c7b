// Reference images of edit datasets (`<dataset>/control/`): upload, pairing with the targets by
// file stem, serving and deleting through the path guard; the trainer's _latent_cache stays hidden.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import * as image from "@/app/api/datasets/[name]/image/route";
import * as one from "@/app/api/datasets/[name]/route";
import * as upload from "@/app/api/datasets/[name]/upload/route";
import * as datasets from "@/app/api/datasets/route";
import * as files from "@/app/api/files/[root]/[...path]/route";
import { body, ctx, JPG_BYTES, PNG_BYTES, request, uploadForm, useTempDataRoot, WEBP_BYTES } from "./helpers";

const data = useTempDataRoot();
const dsDir = () => path.join(data.root(), "datasets");
const control = () => path.join(dsDir(), "edits", "control");

async function post(name: string, form: FormData, query = "") {
  return upload.POST(request(`/api/datasets/${name}/upload${query}`, { method: "POST", body: form }), ctx({ name }));
}

async function getFile(segments: string[]) {
  return files.GET(request(`/api/files/datasets/${segments.join("/")}`), ctx({ root: "datasets", path: segments }));
}

async function detail(name = "edits") {
  return body(await one.GET(request(`/api/datasets/${name}`), ctx({ name })));
}

async function summary(name = "edits") {
  const list = await body(await datasets.GET(request("/api/datasets"), ctx()));
  return list.datasets.find((d: { name: string }) => d.name === name);
}

async function del(file: string, kind = "reference") {
  const q = `file=${encodeURIComponent(file)}${kind ? `&kind=${kind}` : ""}`;
  return image.DELETE(request(`/api/datasets/edits/image?${q}`, { method: "DELETE" }), ctx({ name: "edits" }));
}

describe("reference images", () => {
  it("uploads references into control/ under their own names, images only", async () => {
    expect((await datasets.POST(request("/api/datasets", { method: "POST", json: { name: "edits" } }), ctx())).status).toBe(201);
    const targets = await post(
      "edits",
      uploadForm([
        { name: "e_00.png", data: PNG_BYTES },
        { name: "e_00.txt", data: "make it blue" },
        { name: "e_01.png", data: PNG_BYTES },
        { name: "e_02.png", data: PNG_BYTES },
      ]),
    );
    expect(targets.status).toBe(200);
    const before = await summary();
    expect(before).toMatchObject({ images: 3, captions: 1, references: 0, paired: 0, first_reference: null });

    const res = await post(
      "edits",
      uploadForm([
        { name: "e_00.png", data: PNG_BYTES },
        { name: "e_01.jpg", data: JPG_BYTES },
        { name: "e_01.txt", data: "a caption" },
        { name: "fake.webp", data: "not a webp" },
        { name: "../../e_09.png", data: PNG_BYTES },
        { name: "run.sh", data: "#!/bin/sh" },
      ]),
      "?kind=reference",
    );
    expect(res.status).toBe(200);
    const result = await body(res);
    expect(result.saved.sort()).toEqual(["e_00.png", "e_01.jpg", "e_09.png"]);
    expect(result.rejected.map((r: { file: string }) => r.file).sort()).toEqual(["e_01.txt", "fake.webp", "run.sh"]);
    expect(result.rejected.find((r: { file: string }) => r.file === "e_01.txt").reason).toMatch(/no caption/);
    expect(fs.readdirSync(control()).sort()).toEqual(["e_00.png", "e_01.jpg", "e_09.png"]);
    // nothing landed beside the targets or outside the dataset
    expect(fs.readdirSync(path.join(dsDir(), "edits")).sort()).toEqual(["control", "e_00.png", "e_00.txt", "e_01.png", "e_02.png"]);
    expect(fs.existsSync(path.join(data.root(), "e_09.png"))).toBe(false);

    // the kind can also be a form field; an unknown kind is refused
    const form = uploadForm([{ name: "e_02.webp", data: WEBP_BYTES }]);
    form.append("kind", "reference");
    expect((await post("edits", form)).status).toBe(200);
    expect(fs.existsSync(path.join(control(), "e_02.webp"))).toBe(true);
    expect((await post("edits", uploadForm([{ name: "x.png", data: PNG_BYTES }]), "?kind=secret")).status).toBe(400);
    expect((await post("nope", uploadForm([{ name: "x.png", data: PNG_BYTES }]), "?kind=reference")).status).toBe(404);
  });

  it("replaces a reference of the same stem with another extension (one per target)", async () => {
    const res = await post("edits", uploadForm([{ name: "e_02.png", data: PNG_BYTES }]), "?kind=reference");
    expect(res.status).toBe(200);
    expect((await body(res)).replaced).toEqual(["e_02.webp"]);
    expect(fs.readdirSync(control()).sort()).toEqual(["e_00.png", "e_01.jpg", "e_02.png", "e_09.png"]);
  });

  it("reports, per target, its reference; references without a target; the summary counts", async () => {
    const d = await detail();
    expect(d.images.map((i: { file: string; reference: { file: string; url: string } | null }) => [i.file, i.reference])).toEqual([
      ["e_00.png", { file: "e_00.png", url: "/api/files/datasets/edits/control/e_00.png", size: PNG_BYTES.length }],
      ["e_01.png", { file: "e_01.jpg", url: "/api/files/datasets/edits/control/e_01.jpg", size: JPG_BYTES.length }],
      ["e_02.png", { file: "e_02.png", url: "/api/files/datasets/edits/control/e_02.png", size: PNG_BYTES.length }],
    ]);
    expect(d.references.map((r: { file: string; target: string | null }) => [r.file, r.target])).toEqual([
      ["e_00.png", "e_00.png"],
      ["e_01.jpg", "e_01.png"],
      ["e_02.png", "e_02.png"],
      ["e_09.png", null],
    ]);
    expect(d.reference_problems).toEqual([]);
    expect(await summary()).toMatchObject({ images: 3, references: 4, paired: 3, first_reference: "e_00.png" });

    // two files for one stem (copied in by hand): the trainer refuses it, the page says so
    fs.writeFileSync(path.join(control(), "e_02.jpg"), JPG_BYTES);
    expect((await detail()).reference_problems[0]).toMatch(/e_02.jpg \/ e_02.png/);
    fs.rmSync(path.join(control(), "e_02.jpg"));
  });

  it("keeps the trainer's _latent_cache folders hidden", async () => {
    for (const dir of [path.join(dsDir(), "edits", "_latent_cache"), path.join(control(), "_latent_cache")]) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, "e_00.png"), PNG_BYTES);
      fs.writeFileSync(path.join(dir, "e_00_abc.safetensors"), "x");
    }
    const d = await detail();
    expect(d.images.map((i: { file: string }) => i.file)).toEqual(["e_00.png", "e_01.png", "e_02.png"]);
    expect(d.references.map((r: { file: string }) => r.file)).toEqual(["e_00.png", "e_01.jpg", "e_02.png", "e_09.png"]);
    expect(await summary()).toMatchObject({ images: 3, references: 4 });
    expect((await getFile(["edits", "_latent_cache", "e_00.png"])).status).toBe(404);
    expect((await getFile(["edits", "_latent_cache", "e_00_abc.safetensors"])).status).toBe(404);
    expect((await getFile(["edits", "control", "_latent_cache", "e_00.png"])).status).toBe(404);
  });

  it("serves references through the path guard", async () => {
    const ok = await getFile(["edits", "control", "e_00.png"]);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("content-type")).toBe("image/png");
    expect(Buffer.from(await ok.arrayBuffer()).equals(PNG_BYTES)).toBe(true);
    expect((await getFile(["edits", "control", "e_01.jpg"])).headers.get("content-type")).toBe("image/jpeg");

    fs.writeFileSync(path.join(data.root(), "secret.png"), PNG_BYTES);
    fs.symlinkSync(path.join(data.root(), "secret.png"), path.join(control(), "e_03.png"));
    expect((await getFile(["edits", "control", "e_03.png"])).status).toBe(403);
    // a symlinked reference is neither listed nor paired
    expect((await detail()).references.map((r: { file: string }) => r.file)).not.toContain("e_03.png");
    expect((await getFile(["edits", "control", "..", "..", "..", "secret.png"])).status).toBe(400);
    expect((await getFile(["edits", "control/../../../secret.png"])).status).toBe(400);
    expect((await getFile(["edits", "control", ""])).status).toBe(400);
    expect((await getFile(["edits", "control", "missing.png"])).status).toBe(404);
    expect((await getFile(["edits", "control"])).status).toBe(404);
    expect((await getFile(["edits", "other", "e_00.png"])).status).toBe(404); // only control/ below a dataset
    // the symlink is not deleted through, nor its target
    expect((await del("e_03.png")).status).toBe(403);
    expect(fs.existsSync(path.join(data.root(), "secret.png"))).toBe(true);
    fs.rmSync(path.join(control(), "e_03.png"));
  });

  it("refuses a control folder that is a symlink: nothing is listed, served or written through it", async () => {
    const outside = path.join(data.root(), "outside");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "o_00.png"), PNG_BYTES);
    fs.mkdirSync(path.join(dsDir(), "linked"));
    fs.writeFileSync(path.join(dsDir(), "linked", "o_00.png"), PNG_BYTES);
    fs.symlinkSync(outside, path.join(dsDir(), "linked", "control"));

    const d = await detail("linked");
    expect(d.references).toEqual([]);
    expect(d.images[0].reference).toBeNull();
    expect(d.reference_problems[0]).toMatch(/symlink/);
    expect(await summary("linked")).toMatchObject({ images: 1, references: 0, paired: 0 });
    expect((await getFile(["linked", "control", "o_00.png"])).status).toBe(403);
    const res = await post("linked", uploadForm([{ name: "o_01.png", data: PNG_BYTES }]), "?kind=reference");
    expect(res.status).toBe(403);
    expect(fs.readdirSync(outside)).toEqual(["o_00.png"]);
    const delRes = await image.DELETE(
      request("/api/datasets/linked/image?kind=reference&file=o_00.png", { method: "DELETE" }),
      ctx({ name: "linked" }),
    );
    expect(delRes.status).toBe(403);
    expect(fs.existsSync(path.join(outside, "o_00.png"))).toBe(true);
  });

  it("deletes a reference (not its target), and refuses traversal", async () => {
    expect((await del("e_01.jpg")).status).toBe(200);
    expect(fs.existsSync(path.join(control(), "e_01.jpg"))).toBe(false);
    expect(fs.existsSync(path.join(dsDir(), "edits", "e_01.png"))).toBe(true);
    const d = await detail();
    expect(d.images.find((i: { file: string }) => i.file === "e_01.png").reference).toBeNull();
    expect(await summary()).toMatchObject({ paired: 2, references: 3 });

    for (const bad of ["../e_00.png", "../../../ui.sqlite", "/etc/passwd", "e_00.txt", ""]) {
      expect([400, 404], bad).toContain((await del(bad)).status);
    }
    expect(fs.existsSync(path.join(dsDir(), "edits", "e_00.png"))).toBe(true);
    expect(fs.existsSync(path.join(data.root(), "ui.sqlite"))).toBe(true);
    expect((await del("missing.png")).status).toBe(404);
    expect((await del("e_00.png", "bogus")).status).toBe(400);

    // deleting a target keeps its reference (it is then listed without a target)
    expect((await del("e_00.png", "")).status).toBe(200);
    expect(fs.existsSync(path.join(control(), "e_00.png"))).toBe(true);
    expect((await detail()).references.find((r: { file: string }) => r.file === "e_00.png").target).toBeNull();
    // deleting the dataset removes its references too
    expect((await one.DELETE(request("/api/datasets/edits", { method: "DELETE" }), ctx({ name: "edits" }))).status).toBe(200);
    expect(fs.existsSync(control())).toBe(false);
  });
});
