/**
 * The production upstream connector: a TCP connection opened by the native addon with the bypass
 * SO_MARK set before connect(), so even the SYN skips our OUTPUT rule (setting the mark after a
 * Node connect would let the SYN be intercepted: a loop back into ourselves).
 */
import net from 'node:net';
import type { NativeNet } from '@tproxy/native';
import type { SocketConnector } from '../engine/upstream.js';

/** A destination that does not answer within this is reported as a connect timeout (502). */
export const CONNECT_TIMEOUT_MS = 10_000;

export function markedConnector(native: Pick<NativeNet, 'connectMarked'>, bypassMark: number, timeoutMs = CONNECT_TIMEOUT_MS): SocketConnector {
  return async (address, port) => {
    const fd = await native.connectMarked(address, port, bypassMark, timeoutMs);
    const socket = new net.Socket({ fd, readable: true, writable: true });
    // A streamed request body (an upload, a gRPC client stream) leaves in small writes: Nagle
    // would hold each one until the previous is acknowledged (a delayed ACK: up to 40 ms).
    socket.setNoDelay(true);
    return socket;
  };
}
