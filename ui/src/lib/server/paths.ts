// The path guard. Every route that reads or writes a file turns the user's relative path into
// an absolute one here, and only here: no absolute paths, no `..`, no empty or odd segments,
// and the real path (symlinks resolved) must stay inside the root (datasets or output).
import fs from "node:fs";
import path from "node:path";
import { HttpError } from "./http";

/** Splits a user-supplied relative path (a string or URL segments) into checked segments. */
export function checkRelative(rel: string | string[]): string[] {
  const parts = Array.isArray(rel) ? rel : String(rel).split("/");
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "")) {
    throw new HttpError(400, "empty path");
  }
  if (!Array.isArray(rel) && (rel.startsWith("/") || rel.startsWith("\\"))) {
    throw new HttpError(400, "absolute paths are not allowed");
  }
  for (const part of parts) {
    if (part === "" || part === "." || part === "..") {
      throw new HttpError(400, `path segment ${JSON.stringify(part)} is not allowed`);
    }
    if (/[\\/\0]/.test(part) || /^[a-zA-Z]:/.test(part)) {
      throw new HttpError(400, `path segment ${JSON.stringify(part)} is not allowed`);
    }
  }
  return parts;
}

function within(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

function realRoot(root: string): string {
  try {
    return fs.realpathSync(root);
  } catch {
    throw new HttpError(404, "not found");
  }
}

/** An existing file or folder inside root; 404 when missing, 403 when it resolves outside. */
export function resolveExisting(root: string, rel: string | string[]): string {
  const parts = checkRelative(rel);
  const base = realRoot(root);
  let real: string;
  try {
    real = fs.realpathSync(/*turbopackIgnore: true*/ path.join(/*turbopackIgnore: true*/ base, ...parts));
  } catch {
    throw new HttpError(404, "not found");
  }
  if (!within(base, real) || real === base) throw new HttpError(403, "path is outside the allowed folder");
  return real;
}

/**
 * A path to create or overwrite inside root: its parent folder must exist and resolve inside
 * root, and the name itself must not be a symlink (writing through it would escape).
 */
export function resolveForWrite(root: string, rel: string | string[]): string {
  const parts = checkRelative(rel);
  const base = realRoot(root);
  const name = parts[parts.length - 1];
  let parent: string;
  try {
    parent = fs.realpathSync(/*turbopackIgnore: true*/ path.join(/*turbopackIgnore: true*/ base, ...parts.slice(0, -1)));
  } catch {
    throw new HttpError(404, "folder not found");
  }
  if (!within(base, parent)) throw new HttpError(403, "path is outside the allowed folder");
  const target = path.join(parent, name);
  let stat: fs.Stats | undefined;
  try {
    stat = fs.lstatSync(target);
  } catch {
    stat = undefined;
  }
  if (stat?.isSymbolicLink()) throw new HttpError(403, "refusing to write through a symlink");
  if (stat?.isDirectory()) throw new HttpError(409, "a folder has that name");
  return target;
}

/** Names of datasets and jobs: one safe path segment. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkName(kind: string, name: unknown): string {
  if (typeof name !== "string" || !NAME_RE.test(name) || name.includes("..")) {
    throw new HttpError(
      400,
      `${kind} name must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}
