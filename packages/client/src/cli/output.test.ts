process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode, RpcError } from '@tproxy/protocol';
import { CallTimeoutError, DaemonUnreachableError } from '../rpc/errors.js';
import { runningStatus, sampleCa, sampleExchange, sampleInfo, stoppedStatus, T0 } from '../test/fixtures.js';
import {
  decodeText,
  errorToJson,
  escapeInline,
  escapeMultiline,
  formatEnvExports,
  shellQuote,
  formatBody,
  formatBytes,
  formatCa,
  formatClock,
  formatEndpoint,
  formatError,
  formatExchangeDetail,
  formatPem,
  formatStatus,
  formatTailLine,
  formatUptime,
  hexSummary,
  jsonLine,
} from './output.js';

/** Code points a terminal could act on (C0, DEL, C1, bidi controls, line separators). */
function terminalControls(text: string): string[] {
  return [...text].filter((c) => {
    const n = c.codePointAt(0)!;
    return n < 0x20 || (n >= 0x7f && n <= 0x9f) || (n >= 0x202a && n <= 0x202e) || (n >= 0x2066 && n <= 0x2069) || n === 0x2028;
  });
}

describe('escaping untrusted text', () => {
  test('escapeInline makes every control visible, including newline and tab', () => {
    assert.equal(escapeInline('a\x1b]0;pwned\x07b'), 'a\\x1b]0;pwned\\x07b');
    assert.equal(escapeInline('x\ry\nz\tw'), 'x\\ry\\nz\\tw');
    assert.equal(escapeInline('\x9b2J\x7f'), '\\x9b2J\\x7f');
    assert.equal(escapeInline('abc\u202Egnp.exe'), 'abc\\u202egnp.exe');
    assert.equal(escapeInline('héllo → ✓'), 'héllo → ✓');
  });

  test('escapeMultiline keeps \\n and \\t, folds CRLF, escapes a lone CR and ESC', () => {
    assert.equal(escapeMultiline('a\r\nb\tc\rd\x1b[2Je\n'), 'a\nb\tc\\rd\\x1b[2Je\n');
  });

  test('jsonLine escapes DEL, C1 and bidi controls but keeps the value', () => {
    const value = { s: 'a\x1b\x7f\x9b\u202e\u2028z' };
    const line = jsonLine(value);
    assert.ok(line.endsWith('\n'));
    assert.equal(line.split('\n').length, 2);
    assert.deepEqual(terminalControls(line.slice(0, -1)), []);
    assert.deepEqual(JSON.parse(line), value);
  });
});

describe('small units', () => {
  test('formatBytes', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1024), '1 KiB');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(65536), '64 KiB');
    assert.equal(formatBytes(3.25 * 1024 * 1024), '3.3 MiB');
  });

  test('formatClock is HH:MM:SS.mmm', () => {
    assert.equal(formatClock(T0), '07:08:09.123');
    assert.equal(formatClock(Date.UTC(2024, 0, 1, 0, 0, 0, 5)), '00:00:00.005');
  });

  test('formatUptime and formatEndpoint', () => {
    assert.equal(formatUptime(45_000), '45s');
    assert.equal(formatUptime(185_000), '3m 5s');
    assert.equal(formatUptime(7_620_000), '2h 7m');
    assert.equal(formatEndpoint({ address: '::1', port: 8443 }), '[::1]:8443');
    assert.equal(formatEndpoint({ address: '10.0.0.1', port: 443 }), '10.0.0.1:443');
  });
});

describe('formatTailLine', () => {
  test('a completed exchange', () => {
    assert.equal(formatTailLine(sampleExchange()), '07:08:09.123 GET https://example.com/index.html 200 1.5 KiB 153ms');
  });

  test('a failed exchange shows ERR <kind>', () => {
    const ex = sampleExchange({
      state: 'error',
      response: undefined,
      error: { kind: 'upstream-connect', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED' },
      timing: { startedAt: T0, end: 3 },
    });
    assert.equal(formatTailLine(ex), '07:08:09.123 GET https://example.com/index.html ERR upstream-connect - 3ms');
  });

  test('with an event name, and with hostile URL and method', () => {
    const ex = sampleExchange({
      state: 'in-flight',
      response: undefined,
      timing: { startedAt: T0 },
      request: { ...sampleExchange().request, method: 'G\x1bET', url: 'https://x/\x1b]0;title\x07\r' },
    });
    assert.equal(formatTailLine(ex, 'started'), '07:08:09.123 started   G\\x1bET https://x/\\x1b]0;title\\x07\\r - - -');
  });
});

describe('formatStatus', () => {
  test('running, with helper info', () => {
    assert.equal(
      formatStatus(runningStatus(), sampleInfo()),
      [
        'capture: running since 2024-05-06 07:08:09.123',
        'intercepted: 3 connections',
        'listeners: 127.0.0.1:8443, [::1]:8443',
        'config: ports 443, mark 0x2333/0x3fff, bypass mark 0x539, table 233, ipv6 on, listen port 8443, body limit 64 KiB',
        'scope: every local process',
        'rules applied:',
        '  add table inet tproxy',
        '  ip rule add fwmark 0x2333 lookup 233',
        'CA: installed at /usr/local/share/ca-certificates/tproxy-1a2b.crt',
        'helper: tproxy-helper 0.1.0, protocol 1, pid 4242, up 3m 5s',
        '',
      ].join('\n'),
    );
  });

  test('stopped', () => {
    assert.equal(formatStatus(stoppedStatus()), 'capture: stopped\nCA: not installed\n');
  });

  test('unavailable with its reason; native and protocol warnings', () => {
    const text = formatStatus(
      stoppedStatus({ available: false, reason: 'no CAP_NET_ADMIN' }),
      sampleInfo({ protocolVersion: 2, native: { available: false, reason: 'addon not built' } }),
    );
    assert.match(text, /^capture: unavailable: no CAP_NET_ADMIN$/m);
    assert.match(text, /^native: unavailable: addon not built$/m);
    assert.match(text, /^warning: the helper speaks protocol 2, this tproxyctl speaks 1$/m);
  });
});

test('formatCa and formatPem', () => {
  assert.equal(
    formatCa(sampleCa()),
    [
      'subject:    tproxy CA 1a2b',
      'sha256:     AB:CD:EF:01',
      'not after:  2034-05-06T07:08:09.000Z',
      'installed:  yes (/usr/local/share/ca-certificates/tproxy-1a2b.crt)',
      'ca file:    /run/tproxy/ca.pem',
      'bundle:     /run/tproxy/bundle.pem',
      '',
    ].join('\n'),
  );
  assert.ok(formatCa(sampleCa({ installed: false, trustStorePath: undefined })).includes('\ninstalled:  no\n'));
  assert.equal(formatPem('-----BEGIN X-----\nAA\n-----END X-----'), '-----BEGIN X-----\nAA\n-----END X-----\n');
});

describe('env exports', () => {
  test('shellQuote: one single-quoted word, embedded quotes closed and escaped', () => {
    assert.equal(shellQuote('/run/tproxy/ca.pem'), "'/run/tproxy/ca.pem'");
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote('$(rm -rf /) `x` "y" \\ *'), "'$(rm -rf /) `x` \"y\" \\ *'");
  });

  test('formatEnvExports: usage comment, then sorted quoted exports; unusable names are dropped', () => {
    assert.equal(
      formatEnvExports(sampleCa().env),
      [
        '# Trust tproxy in runtimes with their own CA stores: eval "$(tproxyctl env)"',
        "export CURL_CA_BUNDLE='/run/tproxy/bundle.pem'",
        "export GIT_SSL_CAINFO='/run/tproxy/bundle.pem'",
        "export NODE_EXTRA_CA_CERTS='/run/tproxy/ca.pem'",
        "export REQUESTS_CA_BUNDLE='/run/tproxy/bundle.pem'",
        "export SSL_CERT_FILE='/run/tproxy/bundle.pem'",
        '',
      ].join('\n'),
    );
    assert.equal(formatEnvExports({ 'A;B': 'x', X: "a'b" }).split('\n').slice(1).join('\n'), "export X='a'\\''b'\n");
  });
});

describe('bodies', () => {
  test('decodeText: UTF-8 is text, NUL or invalid UTF-8 is binary', () => {
    assert.equal(decodeText(Buffer.from('héllo')), 'héllo');
    assert.equal(decodeText(Buffer.from([0x68, 0x00])), null);
    assert.equal(decodeText(Buffer.from([0xff, 0xfe, 0x41])), null);
  });

  test('hexSummary is hexdump -C style and says how much it left out', () => {
    const bytes = Buffer.from('\x89PNG\r\n\x1a\n0123456789abcdefXYZ', 'latin1');
    assert.equal(
      hexSummary(bytes, 16),
      '00000000  89 50 4e 47 0d 0a 1a 0a  30 31 32 33 34 35 36 37  |.PNG....01234567|\n... 11 more bytes',
    );
  });

  test('formatBody: empty, text with escapes, truncated, binary', () => {
    assert.equal(formatBody(Buffer.alloc(0), { size: 0, captured: 0, truncated: false }), '(no body)');
    assert.equal(
      formatBody(Buffer.from('hi\x1b[31m\r\n'), { size: 9, captured: 9, truncated: false }),
      '[body: 9 bytes]\nhi\\x1b[31m',
    );
    assert.equal(formatBody(Buffer.from('abc'), { size: 100, captured: 3, truncated: true }), '[body: 100 bytes; only the first 3 captured]\nabc\n[no newline at end of body]');
    assert.ok(formatBody(Buffer.from([0, 1, 2]), { size: 3, captured: 3, truncated: false }).startsWith('[body: 3 bytes; binary]\n00000000  00 01 02'));
  });
});

test('formatExchangeDetail shows heads and bodies and escapes hostile headers', () => {
  const ex = sampleExchange();
  ex.response!.headers.push(['X-Evil', 'a\x1b]2;owned\x07\r\nInjected: yes']);
  const text = formatExchangeDetail({
    exchange: ex,
    requestBody: '',
    responseBody: Buffer.from('<p>hello</p>\n').toString('base64'),
  });
  assert.equal(
    text,
    [
      'exchange 42 (complete)',
      'GET https://example.com/index.html -> 200 OK',
      'client:  127.0.0.1:50123',
      'server:  93.184.216.34:443',
      'tls:     sni example.com, client TLSv1.3, upstream TLSv1.3, alpn http/1.1',
      'started: 2024-05-06 07:08:09.123',
      'timing:  upstream 10ms, first byte 40ms, total 153ms',
      '',
      '--- request',
      'GET https://example.com/index.html HTTP/1.1',
      'Host: example.com',
      'Accept: */*',
      '',
      '(no body)',
      '',
      '--- response',
      'HTTP/1.1 200 OK',
      'Content-Type: text/html',
      'X-Evil: a\\x1b]2;owned\\x07\\r\\nInjected: yes',
      '',
      '[body: 1536 bytes]',
      '<p>hello</p>',
      '',
    ].join('\n'),
  );
  assert.deepEqual(terminalControls(text.replace(/\n/g, '')), []);
});

describe('errors', () => {
  test('formatError: message, plus the hint for a wire access-denied', () => {
    assert.equal(formatError(new Error('boom')), 'error: boom\n');
    assert.match(formatError(new RpcError(ErrorCode.AccessDenied, 'uid 1000 may not write')), /^error: uid 1000 may not write\nhint: run as root or start the helper with --allow-uid \d+\n$/);
  });

  test('errorToJson keeps the wire form of RpcErrors and gives local errors a data.code', () => {
    assert.deepEqual(errorToJson(new RpcError(ErrorCode.InvalidParams, 'ports[0]: ports[] must be between 1 and 65535', { field: 'ports' })), {
      error: { code: -32602, message: 'ports[0]: ports[] must be between 1 and 65535', data: { field: 'ports', code: 'invalid-params' } },
    });
    const unreachable = errorToJson(new DaemonUnreachableError('/x.sock', Object.assign(new Error('nope'), { code: 'ENOENT' })));
    assert.equal(unreachable.error.data.code, 'daemon-unreachable');
    assert.equal(unreachable.error.data.errno, 'ENOENT');
    assert.deepEqual(errorToJson(new CallTimeoutError('capture.start', 50)).error.data, { code: 'timeout', method: 'capture.start', timeoutMs: 50 });
    assert.deepEqual(errorToJson(new Error('x')), { error: { message: 'x', data: { code: 'failed' } } });
  });
});
