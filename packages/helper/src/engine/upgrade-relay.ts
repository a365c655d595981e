/**
 * The HTTP/1.1 Upgrade path of the relay: forwards the client's upgrade request, and when the
 * upstream answers 101 joins the two sockets byte for byte. For WebSocket a copy of each direction
 * goes through the frame parser (websocket.ts), and the exchange is announced as updated while the
 * connection is open (at most every UPDATE_INTERVAL_MS). A non-101 answer is relayed as an ordinary
 * response that closes the connection. Nothing the peers send is altered after the 101.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { ExchangeError } from '@tproxy/protocol';
import type { LiveExchange } from '../capture/live-exchange.js';
import { maskRawHeaders } from '../capture/mask.js';
import type { ExchangeStore } from '../capture/store.js';
import { classifyUpstreamError } from './errors.js';
import { recordUpstreamSocket } from './exchange-record.js';
import { stripHopByHop } from './headers.js';
import { tooManyResponseHeaders } from './request-guard.js';
import type { UpstreamTarget } from './upstream.js';
import { WebSocketTracker } from './websocket.js';

/** Live updates of an open WebSocket exchange are coalesced to at most one per this interval. */
export const UPDATE_INTERVAL_MS = 250;

/** How long a connection we answered and closed may linger before it is destroyed. */
const REPLY_LINGER_MS = 2000;

/**
 * Writes a complete response that closes the connection (the socket is no longer Node's to frame).
 * Anything more the client sends is read and dropped, so its FIN is seen and the socket closes;
 * a client that never closes its side is cut off after REPLY_LINGER_MS.
 */
export function rawReply(socket: net.Socket, status: number, statusMessage: string, body: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${status} ${statusMessage}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  socket.resume();
  setTimeout(() => socket.destroy(), REPLY_LINGER_MS).unref();
}

/** The client's upgrade request headers for the upstream: end-to-end fields plus the upgrade itself. */
export function upgradeRequestHeaders(rawHeaders: readonly string[]): string[] {
  let upgrade: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'upgrade') upgrade = rawHeaders[i + 1]!;
  const out = stripHopByHop(rawHeaders);
  if (upgrade !== undefined) out.push('Connection', 'Upgrade', 'Upgrade', upgrade);
  return out;
}

/** A raw header list as head lines, `Name: value\r\n` each (values were validated by the parser). */
function headLines(raw: readonly string[]): string {
  let out = '';
  for (let i = 0; i + 1 < raw.length; i += 2) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return out;
}

export interface UpgradeRelay {
  client: net.Socket;
  /** Bytes the client sent after its request head (early frames). */
  clientHead: Buffer;
  upReq: http.ClientRequest;
  ex: LiveExchange;
  target: UpstreamTarget;
  /** Parse WebSocket frames (otherwise bytes are only counted by the sockets). */
  websocket: boolean;
  store: ExchangeStore;
  /** Text bytes kept over the whole connection (the body capture limit). */
  textBudget: number;
  /** Neither side sending anything for this long closes both. */
  idleMs: number;
  maxHeaderCount: number;
  finish(error?: ExchangeError): void;
}

export function relayUpgrade(r: UpgradeRelay): void {
  const { client, upReq, ex } = r;
  let joined = false;
  const fail = (status: number, statusMessage: string, error: ExchangeError) => {
    if (ex.finished) return;
    if (!ex.hasResponse) {
      const body = `tproxy: ${error.message}\n`;
      ex.setResponse({ status, statusMessage, httpVersion: '1.1', headers: [['Content-Type', 'text/plain; charset=utf-8']] });
      ex.responseBody.add(Buffer.from(body));
      r.finish(error);
      rawReply(client, status, statusMessage, body);
    } else {
      r.finish(error);
      client.destroy();
    }
  };

  recordUpstreamSocket(ex, upReq);
  upReq.on('error', (err) => {
    if (!joined) fail(502, 'Bad Gateway', classifyUpstreamError(err, r.target, ex.hasResponse));
  });
  // The client leaving before the upstream answered: nothing left to relay.
  const clientGone = () => {
    if (joined || ex.finished) return;
    r.finish({ kind: 'client-aborted', message: 'the client closed the connection before the upgrade finished' });
    upReq.destroy();
  };
  client.once('close', clientGone);
  // Nothing else bounds the wait for the upstream's answer: the client is silent meanwhile.
  const answerTimer = setTimeout(() => {
    upReq.destroy();
    fail(504, 'Gateway Timeout', { kind: 'upstream-aborted', message: `the upstream did not answer the upgrade request within ${Math.round(r.idleMs / 1000)}s` });
  }, r.idleMs);
  answerTimer.unref();
  const answered = () => clearTimeout(answerTimer);
  upReq.once('response', answered);
  upReq.once('upgrade', answered);
  upReq.once('close', answered);

  upReq.on('response', (upRes) => {
    // Not upgraded: an ordinary response, delimited by closing the connection.
    const tooMany = tooManyResponseHeaders(upRes.rawHeaders, { maxHeaderCount: r.maxHeaderCount });
    if (tooMany) {
      upRes.destroy();
      return fail(502, 'Bad Gateway', { kind: 'upstream-protocol', message: tooMany });
    }
    ex.setResponse({ status: upRes.statusCode ?? 502, statusMessage: upRes.statusMessage ?? '', httpVersion: upRes.httpVersion, headers: maskRawHeaders(upRes.rawHeaders) });
    r.store.update(ex);
    // Paused since the upgrade: drain it so the client's FIN after our close is seen.
    client.resume();
    client.write(`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n${headLines(stripHopByHop(upRes.rawHeaders))}Connection: close\r\n\r\n`);
    upRes.on('data', (chunk: Buffer) => ex.responseBody.add(chunk));
    upRes.on('end', () => r.finish());
    upRes.on('error', (err) => {
      r.finish(classifyUpstreamError(err, r.target, true));
      client.destroy();
    });
    upRes.pipe(client);
  });

  upReq.on('upgrade', (upRes: http.IncomingMessage, upSocket: net.Socket, upHead: Buffer) => {
    const tooMany = tooManyResponseHeaders(upRes.rawHeaders, { maxHeaderCount: r.maxHeaderCount });
    if (tooMany || client.destroyed) {
      upSocket.destroy();
      if (tooMany) fail(502, 'Bad Gateway', { kind: 'upstream-protocol', message: tooMany });
      return;
    }
    joined = true;
    client.off('close', clientGone);
    ex.setResponse({ status: upRes.statusCode ?? 101, statusMessage: upRes.statusMessage ?? '', httpVersion: upRes.httpVersion, headers: maskRawHeaders(upRes.rawHeaders) });
    // The 101 head goes to the client as the upstream sent it: Upgrade, Connection and
    // Sec-WebSocket-Accept are part of the handshake, not hop-by-hop noise here.
    client.write(`HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n${headLines(upRes.rawHeaders)}\r\n`);
    join(r, upSocket, upHead);
  });

  upReq.end();
}

/** After the 101: both directions piped, a parsed copy counted, both closed together. */
function join(r: UpgradeRelay, upSocket: net.Socket, upHead: Buffer): void {
  const { client, ex, store } = r;
  let pending: NodeJS.Timeout | undefined;
  const tracker = r.websocket
    ? new WebSocketTracker(r.textBudget, () => {
        pending ??= setTimeout(() => {
          pending = undefined;
          if (!ex.finished) store.update(ex);
        }, UPDATE_INTERVAL_MS);
      })
    : undefined;
  if (tracker) ex.setWebSocket(tracker);
  store.update(ex);

  client.on('data', (chunk: Buffer) => tracker?.up.push(chunk));
  upSocket.on('data', (chunk: Buffer) => tracker?.down.push(chunk));
  if (upHead.length > 0) {
    tracker?.down.push(upHead);
    client.write(upHead);
  }
  if (r.clientHead.length > 0) {
    tracker?.up.push(r.clientHead);
    upSocket.write(r.clientHead);
  }
  client.pipe(upSocket);
  upSocket.pipe(client);
  // Nothing read or written on a socket for idleMs (each relayed byte is a read on one and a
  // write on the other, so traffic either way keeps both alive): a silent or half-open tunnel.
  const idle = () => {
    client.destroy();
    upSocket.destroy();
  };
  client.setTimeout(r.idleMs, idle);
  upSocket.setTimeout(r.idleMs, idle);

  let upstreamError: Error | undefined;
  upSocket.on('error', (err) => (upstreamError = err));
  client.on('error', () => {});
  const end = () => {
    clearTimeout(pending);
    client.destroy();
    upSocket.destroy();
    if (ex.finished) return;
    const closed = tracker?.info().closeCode !== undefined;
    if (upstreamError && !closed) r.finish(classifyUpstreamError(upstreamError, r.target, true));
    else r.finish();
  };
  // Either side closing fully ends the tunnel; a half-close (end) is forwarded by pipe first.
  client.once('close', end);
  upSocket.once('close', end);
}
