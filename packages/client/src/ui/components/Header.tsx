/**
 * The two header lines: helper connection (and why not), capture state with listener and ports,
 * interception count, CA, exchanges per second, rows shown, follow. Presentational: readonly props,
 * formatting only; every string from the helper is escaped.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Box, Text } from 'ink';
import type { CaptureStatus } from '@tproxy/protocol';
import { escapeInline } from '../../shared/escape.js';
import { formatEndpoint } from '../../shared/units.js';
import { formatRate } from '../format.js';
import type { ConnectionState } from '../state/reducer.js';

export interface HeaderProps {
  readonly width: number;
  readonly connection: ConnectionState;
  readonly everConnected: boolean;
  readonly capture: CaptureStatus | undefined;
  readonly captureBusy: 'starting' | 'stopping' | undefined;
  readonly rate: number;
  readonly shown: number;
  readonly total: number;
  readonly follow: boolean;
}

const SEP = ' · ';

function HelperState({ connection, everConnected }: Pick<HeaderProps, 'connection' | 'everConnected'>) {
  const c = connection;
  const why = c.message ? `: ${escapeInline(c.message)}` : '';
  if (c.status === 'connected') return <Text color="green">● connected</Text>;
  if (c.status === 'connecting' && !everConnected) return <Text color="yellow">… connecting</Text>;
  if (everConnected) return <Text color="yellow">↻ reconnecting{c.attempt > 1 ? ` (attempt ${c.attempt})` : ''}{why}</Text>;
  if (c.status === 'denied') return <Text color="red">✗ access denied{why}</Text>;
  return <Text color="red">✗ unreachable{why}</Text>;
}

function CaptureState({ capture, captureBusy, connected }: { readonly capture: CaptureStatus | undefined; readonly captureBusy: HeaderProps['captureBusy']; readonly connected: boolean }) {
  if (captureBusy) return <Text color="yellow">{captureBusy}…</Text>;
  if (!capture) return <Text dimColor>unknown</Text>;
  const stale = connected ? '' : ' (last known)';
  if (capture.running) {
    const listen = capture.listeners.map(formatEndpoint).join(' ') || '-';
    const ports = capture.config?.ports.join(',') ?? '?';
    const scope = capture.config?.scope;
    // Whose traffic this is matters: an operator's capture covers only its own uid.
    const whose = [scope?.uids ? `uid ${scope.uids.join(',')}` : '', scope?.cgroup ? `cgroup ${escapeInline(scope.cgroup)}` : ''].filter(Boolean).join(' in ');
    const lost = capture.interception && !capture.interception.ok ? capture.interception.problems : null;
    if (lost) {
      // Rules flushed or routes deleted by someone else: capturing nothing must not look like "quiet".
      return (
        <Text>
          <Text color="red">⚠ interception lost{stale}</Text>
          {SEP}
          {escapeInline(lost.join('; '))}
        </Text>
      );
    }
    return (
      <Text>
        <Text color="green">● running{stale}</Text>
        {SEP}ports {ports}
        {capture.config && !capture.config.ipv6 ? ' (IPv4 only)' : ''}
        {whose ? `${SEP}${whose}` : ''}
        {SEP}listener {listen}
      </Text>
    );
  }
  if (!capture.available) return <Text color="red">✗ unavailable: {escapeInline(capture.reason ?? 'no reason given')}</Text>;
  return <Text color="yellow">■ stopped{stale}</Text>;
}

export function Header(props: HeaderProps) {
  const { width, connection, everConnected, capture, captureBusy, rate, shown, total, follow } = props;
  const connected = connection.status === 'connected';
  const down = !connected && (connection.status !== 'connecting' || everConnected);
  return (
    <Box flexDirection="column" width={width} height={2}>
      <Text wrap="truncate-end">
        helper <HelperState connection={connection} everConnected={everConnected} />
        {connected || everConnected ? (
          <Text>
            {SEP}capture <CaptureState capture={capture} captureBusy={captureBusy} connected={connected} />
          </Text>
        ) : null}
      </Text>
      {down && connection.hint ? (
        <Text wrap="truncate-end" color="yellow">
          hint: {escapeInline(connection.hint)}
          {connection.retryInMs !== undefined ? ` · retrying every ≤${Math.ceil(connection.retryInMs / 1000)}s` : ''}
        </Text>
      ) : (
        <Text wrap="truncate-end">
          intercepted {capture?.interceptCount ?? 0}
          {SEP}CA {capture?.caInstalled ? <Text color="green">installed</Text> : <Text color="yellow">not installed</Text>}
          {SEP}
          {formatRate(rate)}
          {SEP}rows {shown === total ? total : `${shown}/${total}`}
          {SEP}
          {follow ? <Text color="cyan">follow</Text> : <Text dimColor>follow off</Text>}
        </Text>
      )}
    </Box>
  );
}
