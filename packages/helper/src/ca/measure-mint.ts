/**
 * Measures how long a cache-miss leaf mint takes on this machine: mints 200 fresh names against an
 * in-memory CA and prints median and p95, for issueLeaf alone and with tls.createSecureContext (what
 * a LeafCache miss really costs). A script, not a test: speed is measured, never asserted in unit tests.
 * Run: node --import tsx packages/helper/src/ca/measure-mint.ts [count]
 */
import { performance } from 'node:perf_hooks';
import { createSecureContext } from 'node:tls';
import { generateCa } from './generate.js';
import { createLeafKey, issueLeaf } from './leaf.js';
import { caMaterialFromPem } from './material.js';

/** Mints before timing starts, so JIT warm-up is not measured. */
const WARMUP = 20;

const count = Number(process.argv[2] ?? 200);
const generated = await generateCa();
const ca = caMaterialFromPem(generated.certPem, generated.keyPem);
const leafKey = await createLeafKey();

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const fmt = (ms: number): string => `${ms.toFixed(2)} ms`;

for (let i = 0; i < WARMUP; i++) issueLeaf(ca, leafKey, `warmup-${i}.example.test`);

const mint: number[] = [];
const withContext: number[] = [];
for (let i = 0; i < count; i++) {
  const t0 = performance.now();
  const leaf = issueLeaf(ca, leafKey, `host-${i}-${process.pid}.example.test`);
  const t1 = performance.now();
  createSecureContext({ cert: leaf.certPem, key: leaf.keyPem });
  const t2 = performance.now();
  mint.push(t1 - t0);
  withContext.push(t2 - t0);
}
mint.sort((a, b) => a - b);
withContext.sort((a, b) => a - b);
console.log(`${count} fresh names, node ${process.version}`);
console.log(`issueLeaf:                  median ${fmt(percentile(mint, 50))}  p95 ${fmt(percentile(mint, 95))}`);
console.log(`issueLeaf + SecureContext:  median ${fmt(percentile(withContext, 50))}  p95 ${fmt(percentile(withContext, 95))}`);
