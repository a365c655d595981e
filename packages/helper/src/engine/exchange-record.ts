/**
 * The life of one recorded exchange in the store, the same for every relay (HTTP/1.1, HTTP/2):
 * added at once, updated as SSE events arrive (throttled by the exchange) and when attribution
 * names the process late, and finished once: `completed` is announced only after attribution has
 * settled (bounded by its budget), so subscribers see started → updated* → completed with the
 * process included.
 */
import type http from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { ExchangeError } from '@tproxy/protocol';
import type { LiveExchange } from '../capture/live-exchange.js';
import type { ExchangeStore } from '../capture/store.js';
import type { ProcessLookup } from '../net/attribution.js';

/** Adds `ex` to the store and returns the one function that ends it (complete, or failed with `error`). */
export function recordExchange(store: ExchangeStore, ex: LiveExchange, lookup: ProcessLookup | undefined): (error?: ExchangeError) => void {
  store.add(ex);
  ex.onSseProgress(() => store.update(ex));
  // Attribution normally settles during the TLS handshake; when not, the exchange is recorded now
  // (the relay never waits) and gets the process when the lookup ends. Registered before `finish`
  // can chain on the same promise, so the process is set first.
  if (lookup && !lookup.settled) {
    void lookup.done.then((process) => {
      if (!process) return;
      ex.setProcess(process);
      if (!ex.finished) store.update(ex);
    });
  }
  return (error) => {
    if (ex.finished) return;
    if (error) ex.fail(error);
    else ex.complete();
    if (lookup && !lookup.settled) void lookup.done.then(() => store.finish(ex));
    else store.finish(ex);
  };
}

/**
 * Records when the upstream request got a ready socket and its TLS version. Pooled sockets are
 * ready at once; new ones only reach the request after the TLS verification.
 */
export function recordUpstreamSocket(ex: LiveExchange, upReq: http.ClientRequest): void {
  upReq.on('socket', (socket) => {
    const onReady = () => {
      ex.markUpstreamConnected();
      ex.setTlsUpstreamVersion((socket as TLSSocket).getProtocol?.() ?? undefined);
    };
    if (socket.connecting) socket.once('connect', onReady);
    else onReady();
  });
}
