/**
 * Protocol-valid sample data for tests: one builder per result shape, each taking overrides.
 * Test-only. The timestamps are fixed so formatted output is stable (tests run with TZ=UTC).
 */
import { CAPTURE_DEFAULTS, type CaGetResult, type CaptureStatus, type Exchange, type HelperInfoResult } from '@tproxy/protocol';

/** 2024-05-06T07:08:09.123Z */
export const T0 = Date.UTC(2024, 4, 6, 7, 8, 9, 123);

export function sampleExchange(overrides: Partial<Exchange> = {}): Exchange {
  return {
    id: 42,
    state: 'complete',
    client: { address: '127.0.0.1', port: 50123 },
    server: { address: '93.184.216.34', port: 443 },
    tls: { sni: 'example.com', clientVersion: 'TLSv1.3', upstreamVersion: 'TLSv1.3', alpn: 'http/1.1' },
    request: {
      method: 'GET',
      url: 'https://example.com/index.html',
      httpVersion: '1.1',
      headers: [
        ['Host', 'example.com'],
        ['Accept', '*/*'],
      ],
      body: { size: 0, captured: 0, truncated: false },
    },
    response: {
      status: 200,
      statusMessage: 'OK',
      httpVersion: '1.1',
      headers: [['Content-Type', 'text/html']],
      body: { size: 1536, captured: 1536, truncated: false },
    },
    timing: { startedAt: T0, upstreamConnected: 10.4, firstByte: 40.2, end: 152.6 },
    ...overrides,
  };
}

export function stoppedStatus(overrides: Partial<CaptureStatus> = {}): CaptureStatus {
  return { running: false, available: true, interceptCount: 0, listeners: [], rules: [], caInstalled: false, ...overrides };
}

export function runningStatus(overrides: Partial<CaptureStatus> = {}): CaptureStatus {
  return {
    running: true,
    available: true,
    interceptCount: 3,
    listeners: [
      { address: '127.0.0.1', port: 8443 },
      { address: '::1', port: 8443 },
    ],
    config: { ...CAPTURE_DEFAULTS, ports: [443] },
    rules: ['add table inet tproxy', 'ip rule add fwmark 0x2333 lookup 233'],
    startedAt: T0,
    caInstalled: true,
    trustStorePath: '/usr/local/share/ca-certificates/tproxy-1a2b.crt',
    ...overrides,
  };
}

export function sampleInfo(overrides: Partial<HelperInfoResult> = {}): HelperInfoResult {
  return {
    name: 'tproxy-helper',
    version: '0.1.0',
    protocolVersion: 1,
    pid: 4242,
    uptimeMs: 185_000,
    native: { available: true },
    stateDir: '/var/lib/tproxy',
    peer: { uid: 1000, pid: 777 },
    ...overrides,
  };
}

export function sampleCa(overrides: Partial<CaGetResult> = {}): CaGetResult {
  return {
    pem: '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n',
    fingerprintSha256: 'AB:CD:EF:01',
    subject: 'tproxy CA 1a2b',
    notAfter: '2034-05-06T07:08:09.000Z',
    installed: true,
    trustStorePath: '/usr/local/share/ca-certificates/tproxy-1a2b.crt',
    caPath: '/run/tproxy/ca.pem',
    bundlePath: '/run/tproxy/bundle.pem',
    env: {
      SSL_CERT_FILE: '/run/tproxy/bundle.pem',
      NODE_EXTRA_CA_CERTS: '/run/tproxy/ca.pem',
      REQUESTS_CA_BUNDLE: '/run/tproxy/bundle.pem',
      CURL_CA_BUNDLE: '/run/tproxy/bundle.pem',
      GIT_SSL_CAINFO: '/run/tproxy/bundle.pem',
    },
    ...overrides,
  };
}

/** A gRPC call over HTTP/2: request and response trailers, stream 5, the client offered h2 and http/1.1. */
export function grpcExchange(): Exchange {
  const ex = sampleExchange({ streamId: 5 });
  ex.tls = { ...ex.tls, alpn: 'h2', clientAlpn: ['h2', 'http/1.1'] };
  ex.request = {
    method: 'POST',
    url: 'https://example.com/pkg.Svc/Call',
    httpVersion: '2',
    headers: [['content-type', 'application/grpc']],
    body: { size: 0, captured: 0, truncated: false },
    trailers: [['x-client-done', '1']],
  };
  ex.response = {
    status: 200,
    statusMessage: '',
    httpVersion: '2',
    headers: [['content-type', 'application/grpc']],
    body: { size: 0, captured: 0, truncated: false },
    trailers: [
      ['grpc-status', '0'],
      ['grpc-message', 'ok\x1b[2J'],
    ],
  };
  return ex;
}
