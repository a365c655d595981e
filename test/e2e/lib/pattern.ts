/**
 * The deterministic byte pattern behind the upstream's /bytes and /chunked endpoints, shared by the
 * server (which streams it) and the tests (which compute the expected SHA-256 without holding the
 * body). Pure: no I/O. Byte i of pattern(seed) is a function of (seed, i) only, so any prefix of the
 * stream is itself a valid pattern of that length.
 *
 * Shape: 64 KiB blocks. Every block is the same seed-derived base block (SHA-256 in counter mode)
 * except its first 8 bytes, which hold the block index (big-endian). The index makes a dropped,
 * duplicated or reordered block change the digest even though the rest of the block repeats; the
 * repetition keeps generation at memcpy speed, so 1 GiB hashes in about a second.
 */
import { createHash } from 'node:crypto';

/** Block size: also the server's write size, so each block is one socket write. */
export const PATTERN_BLOCK_SIZE = 64 * 1024;

/** Default seed when a request names none. */
export const DEFAULT_PATTERN_SEED = 'tproxy';

const baseBlocks = new Map<string, Buffer>();

function baseBlock(seed: string): Buffer {
  const cached = baseBlocks.get(seed);
  if (cached) return cached;
  const block = Buffer.alloc(PATTERN_BLOCK_SIZE);
  for (let i = 0; i * 32 < PATTERN_BLOCK_SIZE; i++) {
    createHash('sha256').update(`tproxy-e2e-pattern\0${seed}\0${i}`).digest().copy(block, i * 32);
  }
  // A handful of seeds per test run; the cap only guards against a caller looping over seeds.
  if (baseBlocks.size >= 16) baseBlocks.clear();
  baseBlocks.set(seed, block);
  return block;
}

function fillBlock(target: Buffer, seed: string, index: number): void {
  baseBlock(seed).copy(target);
  target.writeBigUInt64BE(BigInt(index), 0);
}

/** Number of bytes of block `index` that fall inside a pattern of `n` bytes. */
function blockLength(n: number, index: number): number {
  return Math.min(PATTERN_BLOCK_SIZE, n - index * PATTERN_BLOCK_SIZE);
}

function checkLength(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`pattern length must be a non-negative safe integer, got ${n}`);
}

/** The pattern of `n` bytes as fresh buffers of at most PATTERN_BLOCK_SIZE (safe to hand to write()). */
export function* patternChunks(n: number, seed = DEFAULT_PATTERN_SEED): Generator<Buffer> {
  checkLength(n);
  for (let index = 0; index * PATTERN_BLOCK_SIZE < n; index++) {
    const block = Buffer.allocUnsafe(PATTERN_BLOCK_SIZE);
    fillBlock(block, seed, index);
    yield block.subarray(0, blockLength(n, index));
  }
}

/** The whole pattern in memory; for small `n` in unit tests only. */
export function patternBytes(n: number, seed = DEFAULT_PATTERN_SEED): Buffer {
  return Buffer.concat([...patternChunks(n, seed)]);
}

/** Hex SHA-256 of the first `n` bytes of pattern(seed), without allocating them. */
export function patternSha256(n: number, seed = DEFAULT_PATTERN_SEED): string {
  checkLength(n);
  const hash = createHash('sha256');
  // Only the index bytes differ between blocks, so copy the base once and rewrite those.
  const scratch = Buffer.from(baseBlock(seed));
  for (let index = 0; index * PATTERN_BLOCK_SIZE < n; index++) {
    scratch.writeBigUInt64BE(BigInt(index), 0);
    hash.update(scratch.subarray(0, blockLength(n, index)));
  }
  return hash.digest('hex');
}
