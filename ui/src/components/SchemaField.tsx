"use client";
// One form input for one setting, built from the trainer's JSON schema (kind, choices, bounds,
// description). The value shown is the user's, else the preset's, else the schema's default.
import YAML from "yaml";
import type { FieldSpec } from "@/lib/schema";

function display(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return YAML.stringify(value, { flow: true } as never).trim();
  return String(value);
}

export interface SchemaFieldProps {
  spec: FieldSpec;
  label?: string;
  /** The value in effect (user's or preset's); undefined = the trainer's default. */
  value: unknown;
  /** Text being typed (numbers are kept as text until they parse). */
  draft?: string;
  error?: string;
  onChange: (text: string) => void;
}

export function SchemaField({ spec, label, value, draft, error, onChange }: SchemaFieldProps) {
  const title = label ?? spec.title;
  const effective = value === undefined ? spec.default : value;
  const help = [spec.description, spec.hasDefault ? `default: ${display(spec.default) || "none"}` : null].filter(Boolean).join(" · ");
  const id = `field-${spec.path}`;
  if (spec.kind === "boolean") {
    return (
      <div>
        <label className="check" title={help}>
          <input
            type="checkbox"
            id={id}
            name={spec.path}
            checked={effective === true}
            onChange={(e) => onChange(e.target.checked ? "true" : "false")}
          />
          {title}
        </label>
        {error ? <div className="field-error">{error}</div> : null}
      </div>
    );
  }
  return (
    <label className="field" htmlFor={id}>
      <span className="label">{title}</span>
      {spec.kind === "enum" ? (
        <select id={id} name={spec.path} value={display(effective)} onChange={(e) => onChange(e.target.value)}>
          {spec.nullable || effective === undefined || effective === null ? <option value="">(default)</option> : null}
          {spec.options?.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      ) : (
        <input
          id={id}
          name={spec.path}
          inputMode={spec.kind === "integer" || spec.kind === "number" ? "decimal" : undefined}
          value={draft ?? display(effective)}
          placeholder={spec.hasDefault ? display(spec.default) : ""}
          onChange={(e) => onChange(e.target.value)}
        />
      )}
      {help ? <span className="help">{help}</span> : null}
      {error ? <span className="field-error">{error}</span> : null}
    </label>
  );
}
