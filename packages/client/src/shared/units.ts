/**
 * Small human formats shared by tproxyctl and tproxy-ui: clock times, byte counts, milliseconds,
 * endpoints. Pure functions; times are local time (tests pin TZ=UTC).
 */
import type { Endpoint } from '@tproxy/protocol';
import { escapeInline } from './escape.js';

const pad2 = (n: number) => String(n).padStart(2, '0');
const pad3 = (n: number) => String(n).padStart(3, '0');

/** `HH:MM:SS.mmm` in local time. */
export function formatClock(epochMs: number): string {
  const d = new Date(epochMs);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${pad3(d.getMilliseconds())}`;
}

/** `YYYY-MM-DD HH:MM:SS.mmm` in local time. */
export function formatDateTime(epochMs: number): string {
  const d = new Date(epochMs);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${formatClock(epochMs)}`;
}

/** `YYYYMMDD-HHMMSS` in local time, for file names. */
export function formatFileStamp(epochMs: number): string {
  const d = new Date(epochMs);
  return `${d.getFullYear()}${pad2(d.getMonth() + 1)}${pad2(d.getDate())}-${pad2(d.getHours())}${pad2(d.getMinutes())}${pad2(d.getSeconds())}`;
}

/** Binary units, one decimal below 10: `0 B`, `512 B`, `1.5 KiB`, `64 KiB`, `3.2 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1).replace(/\.0$/, '') : Math.round(value)} ${units[unit]}`;
}

/** Whole milliseconds, `153ms`; `-` when unknown. */
export function formatMs(ms: number | undefined): string {
  return ms === undefined ? '-' : `${Math.round(ms)}ms`;
}

/** `127.0.0.1:443`, `[::1]:443`. */
export function formatEndpoint(e: Endpoint): string {
  const address = escapeInline(e.address);
  return e.address.includes(':') ? `[${address}]:${e.port}` : `${address}:${e.port}`;
}
