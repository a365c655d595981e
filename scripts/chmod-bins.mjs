#!/usr/bin/env node
// Makes every workspace `bin` executable after tsc wrote it. npm sets the mode when it links bins,
// but on a fresh `npm ci` that happens before `prepare` (tsc -b) creates the files, which tsc
// writes 0644: node_modules/.bin/tproxy-helper would then not run.
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { workspaces } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const ws of workspaces) {
  const pkgPath = join(root, ws, 'package.json');
  const { bin } = JSON.parse(readFileSync(pkgPath, 'utf8'));
  for (const file of Object.values(typeof bin === 'string' ? { bin } : (bin ?? {}))) {
    const target = join(dirname(pkgPath), file);
    if (!existsSync(target)) throw new Error(`${ws}: bin ${file} was not built (expected ${target})`);
    chmodSync(target, 0o755);
  }
}
