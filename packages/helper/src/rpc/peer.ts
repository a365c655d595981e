/**
 * Who may talk to the helper, decided once per connection from the kernel's SO_PEERCRED answer,
 * never from anything the peer sends: uid 0 → read+write; an allowed operator uid → read+write;
 * anyone else → refused before any request is read. The branch that matched is returned so the
 * caller logs it.
 */
import type { PeerIdentity, Permissions } from './context.js';

export interface PeerDecision {
  permissions: Permissions;
  /** Which rule matched, for the log. */
  rule: 'root' | 'allowed-uid' | 'refused' | 'no-credentials';
}

export function decidePeer(peer: PeerIdentity | null, allowedUids: readonly number[]): PeerDecision {
  if (peer === null) {
    // Without the addon there is no SO_PEERCRED; the socket's 0600 mode is then the only gate,
    // and only its owner (root or the operator uid it was chowned to) can have connected.
    return { permissions: { read: true, write: true }, rule: 'no-credentials' };
  }
  if (peer.uid === 0) return { permissions: { read: true, write: true }, rule: 'root' };
  if (allowedUids.includes(peer.uid)) return { permissions: { read: true, write: true }, rule: 'allowed-uid' };
  return { permissions: { read: false, write: false }, rule: 'refused' };
}
