/**
 * What every RPC handler receives besides its parsed params: who is calling (from the kernel, not
 * from anything the caller said), what they may do, their connection (for subscriptions), and the
 * helper's services. Handlers stay thin; the logic lives in the services.
 */
import type { CaGetResult, CaptureConfig, CaptureStatus, HelperInfoResult } from '@tproxy/protocol';
import type { ExchangeStore } from '../capture/store.js';
import type { Logger } from '../log.js';

export interface PeerIdentity {
  pid: number;
  uid: number;
  gid: number;
}

export interface Permissions {
  read: boolean;
  write: boolean;
}

/** The capture lifecycle, as handlers see it. */
export interface CaptureControl {
  start(config: CaptureConfig): Promise<CaptureStatus>;
  stop(): Promise<CaptureStatus>;
  status(): CaptureStatus;
  ca(): Promise<CaGetResult>;
}

export interface Services {
  capture: CaptureControl;
  store: ExchangeStore;
  info(): Omit<HelperInfoResult, 'peer'>;
}

/** The per-connection side handlers may act on. */
export interface RpcConnectionHandle {
  readonly id: number;
  subscribe(): void;
  unsubscribe(): void;
  readonly subscribed: boolean;
}

export interface RequestContext {
  peer: PeerIdentity | null;
  permissions: Permissions;
  connection: RpcConnectionHandle;
  services: Services;
  log: Logger;
}
