#!/usr/bin/env node
// Runs every test file with node's own test runner through tsx (TypeScript sources, no build step
// for tests). Unit tests are co-located *.test.ts files; end-to-end tests live in test/e2e and run
// one file at a time because each builds network namespaces and a real helper.
// Usage: node scripts/run-tests.mjs [--unit | --e2e] [extra node --test flags]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const only = args.includes('--unit') ? 'unit' : args.includes('--e2e') ? 'e2e' : 'all';
const extra = args.filter((a) => a !== '--unit' && a !== '--e2e');

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'build' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (/\.test\.tsx?$/.test(name)) out.push(relative(root, p));
  }
  return out;
}

const all = [...find(join(root, 'packages')), ...find(join(root, 'native')), ...find(join(root, 'test'))].sort();
const unit = all.filter((f) => !f.startsWith('test/e2e/'));
const e2e = all.filter((f) => f.startsWith('test/e2e/'));

function run(files, concurrency) {
  if (files.length === 0) return 0;
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...extra, ...files],
    { cwd: root, stdio: 'inherit' },
  );
  return r.status ?? 1;
}

let status = 0;
if (only !== 'e2e') status ||= run(unit, 2);
if (only !== 'unit') status ||= run(e2e, 1);
process.exit(status);
