#!/usr/bin/env node
// Makes every workspace `bin` executable after tsc wrote it, and links it into node_modules/.bin.
// npm sets the mode and links bins itself, but on a fresh `npm ci` that happens before `prepare`
// (tsc -b) creates the files: npm then skips the missing targets (no node_modules/.bin/tproxy-helper
// at all, which `tproxyctl install` names in the unit) and tsc writes 0644.
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { workspaces } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
for (const ws of workspaces) {
  const pkgPath = join(root, ws, 'package.json');
  const { bin } = JSON.parse(readFileSync(pkgPath, 'utf8'));
  for (const [name, file] of Object.entries(typeof bin === 'string' ? { bin } : (bin ?? {}))) {
    const target = join(dirname(pkgPath), file);
    if (!existsSync(target)) throw new Error(`${ws}: bin ${file} was not built (expected ${target})`);
    chmodSync(target, 0o755);
    const link = join(root, 'node_modules', '.bin', name);
    let present = false;
    try {
      lstatSync(link);
      present = true;
    } catch {
      // Not linked yet.
    }
    if (!present) {
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(relative(dirname(link), target), link);
    }
  }
}
