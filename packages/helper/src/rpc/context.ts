/**
 * What every RPC handler receives besides its parsed params: who is calling (from the kernel, not
 * from anything the caller said), what they may do, their connection (for subscriptions), and the
 * helper's services. Handlers stay thin; the logic lives in the services.
 */
import type { CaGetResult, CaInstallParams, CaRotateResult, CaUninstallParams, CaptureConfig, CaptureStatus, ExchangeFilter, HelperInfoResult, HelperRepairResult } from '@tproxy/protocol';
import type { RunManager } from '../capture/run.js';
import type { ExchangeStore } from '../capture/store.js';
import type { Policy } from '../policy.js';
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
  /** Calls `listener` with the new status when capture starts, stops, or loses or regains its steering. */
  onStatusChange(listener: (status: CaptureStatus) => void): () => void;
  /** ca.install: persistent OS trust-store entry. */
  caInstall(params: CaInstallParams): Promise<CaGetResult>;
  /** ca.uninstall: the persistent OS trust-store entry. */
  caUninstall(params: CaUninstallParams): Promise<CaGetResult>;
  /** ca.rotate: a new CA, every trust entry moved to it (CaptureRunning while capture runs). */
  caRotate(): Promise<CaRotateResult>;
}

/** `capture.run` / `capture.runEnd`, as handlers see RunManager (capture/run.ts). */
export type RunControl = Pick<RunManager, 'begin' | 'end' | 'connectionClosed'>;

export interface Services {
  capture: CaptureControl;
  store: ExchangeStore;
  info(): Omit<HelperInfoResult, 'peer'>;
  /** `helper.repair`: undo what a killed helper left (refused while capture runs); remembered for info(). */
  repair(): Promise<HelperRepairResult>;
  /** Who may capture what (policy.ts); EMPTY_POLICY grants nothing (operators capture only their own uid). */
  policy: Policy;
  /** `tproxyctl run` captures (capture/run.ts). */
  runs: RunControl;
}

/** The per-connection side handlers may act on. */
export interface RpcConnectionHandle {
  readonly id: number;
  /** Starts (or, when already subscribed, re-filters) exchange notifications on this connection. */
  subscribe(filter?: ExchangeFilter): void;
  unsubscribe(): void;
  readonly subscribed: boolean;
  /**
   * Sends one notification and resolves once the socket accepted it without exceeding its buffer
   * (immediately, or after 'drain'), so a stream to a slow reader waits instead of queueing; rejects
   * when the connection closed (or was dropped for not reading at all).
   */
  notify(method: string, params: unknown): Promise<void>;
  /** Runs `hook` once when this connection closes (a `capture.run` ends with its requester). */
  onClose(hook: () => void): void;
}

export interface RequestContext {
  peer: PeerIdentity | null;
  permissions: Permissions;
  connection: RpcConnectionHandle;
  services: Services;
  log: Logger;
}
