// Reading the trainer's JSON schema (from `python -m toolkit.ui.schema`) into form fields.
// Titles, descriptions, types, choices, bounds and defaults all come from the Python config
// classes: the UI holds no copy of them.
import type { JsonSchema } from "./types";

export type FieldKind = "boolean" | "integer" | "number" | "string" | "enum" | "yaml";

export interface FieldSpec {
  /** Path inside `config.process[0]`, e.g. `model.qtype`; `datasets.x` applies to every dataset. */
  path: string;
  key: string;
  title: string;
  description?: string;
  kind: FieldKind;
  options?: string[];
  /** A choice that mixes booleans with strings (`false | true | "auto"`): "true"/"false" are booleans. */
  booleanChoices?: boolean;
  nullable: boolean;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  hasDefault: boolean;
  required: boolean;
}

export function deref(root: JsonSchema, node: JsonSchema | undefined): JsonSchema | undefined {
  let current = node;
  for (let i = 0; current?.$ref && i < 16; i++) {
    const name = current.$ref.replace(/^#\/\$defs\//, "");
    current = root.$defs?.[name];
  }
  return current;
}

/** The schema of one training process (`config.process[0]`, `type: sd_trainer`). */
export function processSchema(root: JsonSchema): JsonSchema | undefined {
  const job = deref(root, root.properties?.config);
  const items = job?.properties?.process?.items as JsonSchema | undefined;
  if (!items) return undefined;
  const mapping = (items.discriminator as { mapping?: Record<string, string> } | undefined)?.mapping;
  if (mapping?.sd_trainer) return deref(root, { $ref: mapping.sd_trainer });
  const options = [...((items.oneOf as JsonSchema[] | undefined) ?? []), ...(items.anyOf ?? []), items];
  for (const option of options) {
    const resolved = deref(root, option);
    if (resolved?.properties?.network) return resolved;
  }
  return undefined;
}

function scalarKind(
  root: JsonSchema,
  node: JsonSchema,
): { kind: FieldKind; options?: string[]; nullable: boolean; node: JsonSchema; booleanChoices?: boolean } {
  const options = (node.anyOf ?? [node]).map((n) => deref(root, n) ?? n);
  const nonNull = options.filter((o) => o.type !== "null");
  const nullable = nonNull.length < options.length;
  const isChoice = (o: JsonSchema) => o.type === "boolean" || o.const !== undefined || Array.isArray(o.enum);
  if (nonNull.length > 1 && nonNull.every(isChoice)) {
    const options = nonNull.flatMap((o) => (o.type === "boolean" ? ["false", "true"] : o.const !== undefined ? [String(o.const)] : (o.enum ?? []).map(String)));
    return { kind: "enum", options, nullable, node, booleanChoices: nonNull.some((o) => o.type === "boolean") };
  }
  if (nonNull.length === 1) {
    const only = nonNull[0];
    if (Array.isArray(only.enum)) return { kind: "enum", options: only.enum.map(String), nullable, node: only };
    if (only.const !== undefined) return { kind: "enum", options: [String(only.const)], nullable, node: only };
    if (only.type === "boolean" || only.type === "integer" || only.type === "number" || only.type === "string") {
      return { kind: only.type, nullable, node: only };
    }
  }
  return { kind: "yaml", nullable, node };
}

function isObjectLike(root: JsonSchema, node: JsonSchema): boolean {
  const options = (node.anyOf ?? [node]).map((n) => deref(root, n) ?? n);
  return options.some((o) => o.type === "object" || o.type === "array" || o.properties !== undefined);
}

function specFor(root: JsonSchema, owner: JsonSchema, key: string, path: string): FieldSpec | null {
  const raw = owner.properties?.[key];
  if (!raw) return null;
  const { kind, options, nullable, node, booleanChoices } = scalarKind(root, raw);
  return {
    path,
    key,
    title: raw.title ?? key,
    description: raw.description,
    kind,
    options,
    booleanChoices,
    nullable,
    minimum: node.minimum ?? node.exclusiveMinimum,
    maximum: node.maximum ?? node.exclusiveMaximum,
    default: raw.default,
    hasDefault: "default" in raw,
    required: owner.required?.includes(key) ?? false,
  };
}

function sectionSchema(root: JsonSchema, section: string): JsonSchema | undefined {
  const proc = processSchema(root);
  if (!proc) return undefined;
  if (section === "") return proc;
  const node = proc.properties?.[section];
  if (!node) return undefined;
  const resolved = deref(root, node);
  if (resolved?.type === "array" && resolved.items) return deref(root, resolved.items);
  if (resolved?.anyOf) {
    for (const option of resolved.anyOf) {
      const r = deref(root, option);
      if (r?.properties) return r;
    }
  }
  return resolved;
}

/** The field at `path` (`model.qtype`, `trigger_word`, `datasets.cache_latents_to_disk`). */
export function fieldSpec(root: JsonSchema, path: string): FieldSpec | null {
  const dot = path.indexOf(".");
  const section = dot < 0 ? "" : path.slice(0, dot);
  const key = dot < 0 ? path : path.slice(dot + 1);
  const owner = sectionSchema(root, section);
  return owner ? specFor(root, owner, key, path) : null;
}

/** Every scalar setting of a section (`""` = the process itself), in schema order. */
export function sectionFields(root: JsonSchema, section: string): FieldSpec[] {
  const owner = sectionSchema(root, section);
  if (!owner?.properties) return [];
  const out: FieldSpec[] = [];
  for (const key of Object.keys(owner.properties)) {
    const node = owner.properties[key];
    if (isObjectLike(root, node) && scalarKind(root, node).kind === "yaml") continue;
    const spec = specFor(root, owner, key, section ? `${section}.${key}` : key);
    if (spec) out.push(spec);
  }
  return out;
}

/** Sections of the process that hold settings objects (model, train, sample, ...), in schema order. */
export function settingSections(root: JsonSchema): string[] {
  const proc = processSchema(root);
  if (!proc?.properties) return [];
  return Object.keys(proc.properties).filter((key) => {
    const section = sectionSchema(root, key);
    return section?.properties !== undefined;
  });
}

/** Turns a form input's text into the value to store (undefined = leave unset). */
export function parseFieldText(spec: FieldSpec, text: string, parseYaml: (t: string) => unknown): unknown {
  const trimmed = text.trim();
  if (trimmed === "") return spec.nullable ? null : undefined;
  switch (spec.kind) {
    case "integer":
    case "number": {
      const value = Number(trimmed);
      return Number.isFinite(value) ? value : trimmed; // left as text: the validator names the problem
    }
    case "boolean":
      return trimmed === "true";
    case "enum":
      if (spec.booleanChoices && (trimmed === "true" || trimmed === "false")) return trimmed === "true";
      return text;
    case "yaml":
      try {
        return parseYaml(trimmed);
      } catch {
        return trimmed;
      }
    default:
      return text;
  }
}
