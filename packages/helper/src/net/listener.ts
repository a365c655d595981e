/**
 * Transparent listeners: the native addon creates the IP_TRANSPARENT socket (Node cannot set that
 * option), and a net.Server adopts its fd. TPROXY delivers intercepted connections here with the
 * original destination as the accepted socket's local address.
 */
import net from 'node:net';
import type { NativeNet } from '@tproxy/native';
import type { Logger } from '../log.js';

export interface TransparentListener {
  address: string;
  port: number;
  server: net.Server;
}

export async function openTransparentListener(
  native: Pick<NativeNet, 'createTransparentListener'>,
  address: string,
  port: number,
  onConnection: (socket: net.Socket) => void,
  log: Logger,
): Promise<TransparentListener> {
  const fd = native.createTransparentListener(address, port);
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => {
    // accept() errors (EMFILE, ENFILE) are transient: libuv keeps listening; say so once each time.
    log.warn(`transparent listener ${address}:${port}: ${err.message}`);
  });
  return { address, port, server };
}

export function closeListener(listener: TransparentListener): Promise<void> {
  return new Promise((resolve) => listener.server.close(() => resolve()));
}
