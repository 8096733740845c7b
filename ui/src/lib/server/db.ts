// SQLite through better-sqlite3: one file in DATA_ROOT, schema migrated on open.
// Migrations are append-only; PRAGMA user_version records how many ran.
import Database from "better-sqlite3";
import { ensureDataDirs, settings } from "./settings";

const MIGRATIONS: string[] = [
  `CREATE TABLE jobs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     name TEXT NOT NULL UNIQUE,
     preset TEXT,
     arch TEXT,
     device TEXT NOT NULL DEFAULT '',
     state TEXT NOT NULL,
     pid INTEGER,
     exit_code INTEGER,
     step INTEGER NOT NULL DEFAULT 0,
     total_steps INTEGER NOT NULL DEFAULT 0,
     loss REAL,
     s_per_it REAL,
     error TEXT,
     end_state TEXT,
     progress_offset INTEGER NOT NULL DEFAULT 0,
     end_seen_at REAL,
     run_count INTEGER NOT NULL DEFAULT 0,
     created_at REAL NOT NULL,
     queued_at REAL,
     started_at REAL,
     finished_at REAL,
     stop_requested_at REAL
   )`,
  `CREATE INDEX jobs_state ON jobs(state, queued_at)`,
  // Browser logins (src/lib/server/sessions.ts): the cookie holds a random id, the table its hash.
  `CREATE TABLE sessions (
     id_hash TEXT PRIMARY KEY,
     token_hash TEXT NOT NULL,
     created_at REAL NOT NULL,
     expires_at REAL NOT NULL,
     last_seen_at REAL NOT NULL
   )`,
];

export type DB = Database.Database;

const KEY = Symbol.for("aitk.db");
type Cache = { path: string; db: DB };

function migrate(db: DB): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(
      `the UI database is from a newer version (schema ${version} > ${MIGRATIONS.length}): update the UI`,
    );
  }
  const run = db.transaction(() => {
    for (let i = version; i < MIGRATIONS.length; i++) db.exec(MIGRATIONS[i]);
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  });
  run();
}

/** The database of the current DATA_ROOT (reopened when it changes, as tests do). */
export function getDb(): DB {
  const s = settings();
  const g = globalThis as unknown as Record<symbol, Cache | undefined>;
  const cached = g[KEY];
  if (cached && cached.path === s.dbPath && cached.db.open) return cached.db;
  cached?.db.close();
  ensureDataDirs(s);
  const db = new Database(s.dbPath);
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  g[KEY] = { path: s.dbPath, db };
  return db;
}

export function closeDb(): void {
  const g = globalThis as unknown as Record<symbol, Cache | undefined>;
  g[KEY]?.db.close();
  g[KEY] = undefined;
}

export const SCHEMA_VERSION = MIGRATIONS.length;
