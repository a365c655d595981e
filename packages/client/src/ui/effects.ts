/**
 * The dashboard's side effects: capture start/stop, fetching an exchange's bodies, HAR export,
 * copying a request as curl, quitting. Each reads the current state, talks to the helper through
 * the typed client and reports back with reducer actions; none of them mutates state directly.
 * No React here, so they run the same in the app and in tests.
 */
import { join } from 'node:path';
import { CaptureStartParamsSchema, RpcError, formatZodError, harItemFromDetail, methods, toHar, type Exchange, type HarItem } from '@tproxy/protocol';
import type { TproxyClient } from '../rpc/client.js';
import { isExchangeNotFound } from '../rpc/errors.js';
import { escapeInline } from '../shared/escape.js';
import { formatFileStamp } from '../shared/units.js';
import type { UiDeps } from './deps.js';
import { toCurl } from './export/curl.js';
import type { Effect } from './keymap.js';
import { parsePorts, type StartOptions } from './state/form.js';
import { indexOfId } from './state/rows.js';
import type { Action, State } from './state/reducer.js';

/** Bodies fetched at once during an export: enough to hide latency, few enough not to crowd the helper. */
export const EXPORT_CONCURRENCY = 4;
/** A notice that lasts while a long export runs; the result replaces it. */
const PROGRESS_TTL_MS = 10 * 60_000;

export interface EffectContext {
  getState(): State;
  getClient(): TproxyClient | undefined;
  dispatch(action: Action): void;
  deps: UiDeps;
  quit(): void;
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const message = (err: unknown) => escapeInline(err instanceof Error ? err.message : String(err));
const b64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

export function createEffects(ctx: EffectContext) {
  const { getState, getClient, dispatch, deps } = ctx;
  const notify = (text: string, level: 'info' | 'error' = 'info', ttlMs?: number) =>
    dispatch({ type: 'notice', text, level, now: deps.now(), ...(ttlMs ? { ttlMs } : {}) });
  const connected = (): TproxyClient | undefined => {
    const client = getClient();
    if (!client) notify('not connected to tproxy-helper', 'error');
    return client;
  };

  async function start(client: TproxyClient, options: StartOptions): Promise<void> {
    dispatch({ type: 'captureBusy', op: 'starting' });
    try {
      if (getState().capture?.running) await client.call(methods.captureStop, {});
      const status = await client.call(methods.captureStart, { ports: [...options.ports], ipv6: options.ipv6 });
      dispatch({ type: 'captureDone', status, options, now: deps.now() });
    } catch (err) {
      dispatch({ type: 'captureFailed', message: message(err), now: deps.now() });
    }
  }

  async function toggleCapture(): Promise<void> {
    const state = getState();
    const client = connected();
    if (!client || state.captureBusy) return;
    if (state.capture && !state.capture.running && !state.capture.available) {
      notify(`capture unavailable: ${escapeInline(state.capture.reason ?? 'no reason given')}`, 'error');
      return;
    }
    if (!state.capture?.running) return start(client, state.startOptions);
    dispatch({ type: 'captureBusy', op: 'stopping' });
    try {
      dispatch({ type: 'captureDone', status: await client.call(methods.captureStop, {}), now: deps.now() });
    } catch (err) {
      dispatch({ type: 'captureFailed', message: message(err), now: deps.now() });
    }
  }

  async function submitForm(): Promise<void> {
    const { form, capture } = getState();
    if (!form || form.submitting) return;
    const parsed = parsePorts(form.ports);
    if ('error' in parsed) return dispatch({ type: 'formFailed', message: parsed.error });
    const client = getClient();
    if (!client) return dispatch({ type: 'formFailed', message: 'not connected to tproxy-helper' });
    const options = { ports: parsed.ports, ipv6: form.ipv6 };
    if (capture?.running) {
      // A restart stops capture first; checking with the protocol's own schema (the helper's
      // messages, word for word) before that keeps a typo from leaving capture off.
      const check = CaptureStartParamsSchema.safeParse(options);
      if (!check.success) return dispatch({ type: 'formFailed', message: formatZodError(check.error) });
    }
    return start(client, options);
  }

  async function fetchDetail(id: number): Promise<void> {
    const client = getClient();
    if (!client) return dispatch({ type: 'detailFailed', id, message: 'not connected to tproxy-helper' });
    try {
      dispatch({ type: 'detailLoaded', id, detail: await client.call(methods.exchangesGet, { id }) });
    } catch (err) {
      const text = isExchangeNotFound(err) ? `exchange ${id} is no longer in the helper's buffer` : message(err);
      dispatch({ type: 'detailFailed', id, message: text });
    }
  }

  async function writeUnique(base: string, ext: string, data: string): Promise<string> {
    for (let n = 0; ; n++) {
      const path = join(deps.cwd(), `${base}${n ? `-${n}` : ''}${ext}`);
      try {
        await deps.writeFile(path, data, true);
        return path;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 100) throw err;
      }
    }
  }

  async function exportHar(): Promise<void> {
    const rows = getState().visible;
    if (rows.length === 0) return notify('nothing to export', 'error');
    const client = getClient();
    notify(`exporting ${rows.length} exchange${rows.length === 1 ? '' : 's'}…`, 'info', PROGRESS_TTL_MS);
    let missing = 0;
    const items = await mapLimit(rows, EXPORT_CONCURRENCY, async (ex): Promise<HarItem> => {
      try {
        if (!client) throw new Error('not connected');
        const d = await client.call(methods.exchangesGet, { id: ex.id });
        return harItemFromDetail(d);
      } catch {
        missing++;
        return { exchange: ex };
      }
    });
    try {
      const har = toHar(items, { name: 'tproxy-ui', version: deps.version });
      const path = await writeUnique(`tproxy-${formatFileStamp(deps.now())}`, '.har', `${JSON.stringify(har, null, 2)}\n`);
      notify(`exported ${items.length} to ${escapeInline(path)}${missing ? ` (${missing} without bodies: no longer buffered)` : ''}`);
    } catch (err) {
      notify(`export failed: ${message(err)}`, 'error');
    }
  }

  async function copyCurl(): Promise<void> {
    const state = getState();
    const id = state.view === 'detail' ? state.detail?.id : state.selectedId;
    if (id === undefined) return notify('no exchange selected', 'error');
    const loaded = state.detail?.id === id ? state.detail.data : undefined;
    let exchange: Exchange | undefined = loaded?.exchange ?? state.rows[indexOfId(state.rows, id)];
    let body = loaded ? b64(loaded.requestBody) : undefined;
    const client = getClient();
    if (!loaded && client && (exchange?.request.body.size ?? 1) > 0) {
      try {
        const d = await client.call(methods.exchangesGet, { id });
        exchange = d.exchange;
        body = b64(d.requestBody);
      } catch (err) {
        if (!(err instanceof RpcError) && !exchange) return notify(`cannot copy: ${message(err)}`, 'error');
      }
    }
    if (!exchange) return notify(`exchange ${id} is gone`, 'error');
    const command = toCurl(exchange, body ? { body } : {});
    deps.copyToClipboard(command);
    try {
      const path = join(deps.cwd(), `tproxy-curl-${id}.sh`);
      await deps.writeFile(path, command, false);
      notify(`curl for #${id} copied (OSC 52) and written to ${escapeInline(path)}`);
    } catch (err) {
      notify(`curl for #${id} copied (OSC 52); writing the file failed: ${message(err)}`, 'error');
    }
  }

  const effects: Record<Effect, () => Promise<void> | void> = {
    toggleCapture,
    submitForm,
    exportHar,
    copyCurl,
    quit: ctx.quit,
  };

  return {
    run(effect: Effect): void {
      void Promise.resolve(effects[effect]()).catch((err: unknown) => notify(`${effect} failed: ${message(err)}`, 'error'));
    },
    fetchDetail(id: number): void {
      void fetchDetail(id);
    },
  };
}

export type Effects = ReturnType<typeof createEffects>;
