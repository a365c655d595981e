/**
 * The connection to tproxy-helper, kept alive for as long as the dashboard is mounted: connect,
 * identify the helper process (helper.info), subscribe, load the status and the buffered exchanges,
 * then follow notifications, batched so that hundreds per second become at most one state update
 * per `batchMs`. When the connection fails or drops it retries with exponential backoff (capped at
 * `retry.maxMs`) and does it all again. It polls `capture.status` every `pollMs` (interceptCount,
 * a capture started elsewhere) and ticks the clock for the rate. It reports only through actions.
 */
import { useEffect, useRef } from 'react';
import { RpcError, methods, type Exchange, type HelperInfoResult } from '@tproxy/protocol';
import type { ExchangeEvent, TproxyClient } from '../../rpc/client.js';
import { DaemonUnreachableError, accessDeniedHint, isAccessDenied } from '../../rpc/errors.js';
import type { UiDeps } from '../deps.js';
import type { Action } from '../state/reducer.js';
import { MAX_ROWS } from '../state/rows.js';

/** exchanges.list's largest page (protocol methods/exchanges.ts). */
const PAGE = 1000;
/** A status poll that takes longer than this is abandoned; the next one tries again. */
const POLL_TIMEOUT_MS = 5000;
/** Two helper.info answers whose computed start times differ less than this are the same process. */
const SAME_START_MS = 5000;

interface Instance {
  readonly pid: number;
  readonly startedAt: number;
  readonly key: string;
}

type Failure = Omit<Extract<Action, { type: 'connectFailed' }>, 'type' | 'retryInMs'>;

/** The failure as the header shows it: what happened, and the hint on its own line. */
function describeFailure(err: unknown): Failure {
  if (err instanceof DaemonUnreachableError) {
    const summary = err.message.endsWith(`: ${err.hint}`) ? err.message.slice(0, -err.hint.length - 2) : err.message;
    return { cause: err.reason === 'permission-denied' ? 'denied' : 'unreachable', message: summary, hint: err.hint };
  }
  if (isAccessDenied(err)) {
    const hint = typeof err.detail.hint === 'string' ? err.detail.hint : accessDeniedHint();
    return { cause: 'denied', message: err.message, hint };
  }
  return { cause: 'error', message: err instanceof Error ? err.message : String(err) };
}

async function loadExchanges(client: TproxyClient): Promise<Exchange[]> {
  const all: Exchange[] = [];
  let cursor: number | undefined;
  do {
    const page = await client.call(methods.exchangesList, cursor === undefined ? { limit: PAGE } : { limit: PAGE, cursor });
    all.push(...page.exchanges);
    cursor = page.nextCursor;
  } while (cursor !== undefined && all.length < MAX_ROWS);
  return all;
}

/** Returns a getter for the live client (undefined while disconnected). */
export function useHelper(socketPath: string, deps: UiDeps, dispatch: (action: Action) => void): () => TproxyClient | undefined {
  const clientRef = useRef<TproxyClient | undefined>(undefined);

  useEffect(() => {
    let disposed = false;
    let attempt = 0;
    let retryTimer: NodeJS.Timeout | undefined;
    let flushTimer: NodeJS.Timeout | undefined;
    let polling = false;
    let instance: Instance | undefined;
    const pending: { event: ExchangeEvent; exchange: Exchange }[] = [];

    const flush = () => {
      flushTimer = undefined;
      if (pending.length > 0 && !disposed) dispatch({ type: 'exchangeEvents', events: pending.splice(0), now: deps.now() });
    };
    const backoff = () => Math.min(deps.retry.maxMs, deps.retry.initialMs * 2 ** Math.max(0, attempt - 1));
    const retry = (ms: number) => {
      clearTimeout(retryTimer);
      if (!disposed) retryTimer = setTimeout(() => void connect(), ms);
    };
    const identify = (info: HelperInfoResult | undefined): string | undefined => {
      if (!info) return undefined;
      const startedAt = deps.now() - info.uptimeMs;
      if (!instance || instance.pid !== info.pid || Math.abs(instance.startedAt - startedAt) > SAME_START_MS) {
        instance = { pid: info.pid, startedAt, key: `${info.pid}@${Math.round(startedAt)}` };
      }
      return instance.key;
    };

    async function connect(): Promise<void> {
      if (disposed) return;
      attempt++;
      dispatch({ type: 'connecting', attempt });
      let client: TproxyClient | undefined;
      let ready = false;
      try {
        client = await deps.connect(socketPath);
        if (disposed) return void client.close();
        const live = client;
        const unlisten = [
          live.onExchange((event, exchange) => {
            pending.push({ event, exchange });
            flushTimer ??= setTimeout(flush, deps.batchMs);
          }),
          live.onError((err) => dispatch({ type: 'notice', text: err.message, level: 'error', now: deps.now() })),
          // Another client ran exchanges.clear: drop the rows too (batched events first, to keep order).
          live.onCleared(({ throughId }) => (flush(), dispatch({ type: 'helperCleared', throughId }))),
          // Started, stopped, or interception lost/restored: shown at once, not at the next poll.
          live.onCaptureStatus((status) => dispatch({ type: 'statusReceived', status })),
        ];
        live.onClose((reason) => {
          for (const off of unlisten) off();
          if (clientRef.current === live) clientRef.current = undefined;
          if (disposed || !ready) return;
          flush();
          const failure = describeFailure(reason);
          dispatch({ type: 'disconnected', message: failure.message, ...(failure.hint ? { hint: failure.hint } : {}) });
          attempt = 0;
          retry(deps.retry.initialMs);
        });
        // helper.info comes first: a refused uid fails here, and it tells us which helper process this is.
        const info = await live.call(methods.helperInfo, {}).catch((err: unknown) => {
          if (err instanceof RpcError && !isAccessDenied(err)) return undefined;
          throw err;
        });
        await live.call(methods.exchangesSubscribe, {});
        const status = await live.call(methods.captureStatus, {});
        const exchanges = await loadExchanges(live);
        if (disposed) return void live.close();
        // Closed after the last answer but before we got here: onClose saw `ready` false and left it to us.
        if (live.closed) throw new Error('tproxy-helper closed the connection while the dashboard was loading');
        ready = true;
        attempt = 0;
        clientRef.current = live;
        dispatch({ type: 'connected', now: deps.now() });
        dispatch({ type: 'statusReceived', status });
        flush();
        dispatch({ type: 'listLoaded', exchanges, instance: identify(info) });
      } catch (err) {
        void client?.close();
        if (disposed) return;
        const retryInMs = backoff();
        dispatch({ type: 'connectFailed', ...describeFailure(err), retryInMs });
        retry(retryInMs);
      }
    }

    const poll = setInterval(() => {
      dispatch({ type: 'tick', now: deps.now() });
      const client = clientRef.current;
      if (!client || polling) return;
      polling = true;
      client
        .call(methods.captureStatus, {}, { timeoutMs: POLL_TIMEOUT_MS })
        .then((status) => !disposed && dispatch({ type: 'statusReceived', status }))
        // A failed poll is not news: a dropped connection reports itself through onClose.
        .catch(() => undefined)
        .finally(() => {
          polling = false;
        });
    }, deps.pollMs);

    void connect();
    return () => {
      disposed = true;
      clearInterval(poll);
      clearTimeout(retryTimer);
      clearTimeout(flushTimer);
      void clientRef.current?.close();
      clientRef.current = undefined;
    };
    // The connection lives as long as the socket path; deps and dispatch are stable for the app's life.
  }, [socketPath]);

  return () => clientRef.current;
}
